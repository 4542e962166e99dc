"""Moves routing-step records from the routing.steps Redis stream (written in the step's own round trip) into
routing.steps in PostgreSQL, in batches; a redelivered record is a no-op (unique key)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from services.routing.storage import RoutingStore
from services.routing.streams import Entry

GROUP = "routing-step-writer"


class StepWriter:
    def __init__(self, store: RoutingStore) -> None:
        self._store = store

    async def __call__(self, entries: Sequence[Entry]) -> None:
        steps = [step for _, fields in entries for step in json.loads(fields[b"steps"])]
        if steps:
            await self._store.insert_steps(steps)
