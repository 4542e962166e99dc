"""What an outbox handler reads of a row, apart from the relay, so the modules that build and decode events
stay free of the database driver."""

from __future__ import annotations

from typing import Any, Protocol


class Row(Protocol):
    """An outbox row by column name (asyncpg's Record is one): event_id, topic, payload, created_at."""

    def __getitem__(self, column: str) -> Any: ...
