"""Concurrent twins in one process share one attempt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any


class SingleFlight:
    """The database keeps twins across processes correct; this only saves twins in one process the duplicate
    wallet calls."""

    def __init__(self) -> None:
        self._in_flight: dict[str, asyncio.Future] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """work()'s result, and whether it was shared with a twin already running under the same key."""
        running = self._in_flight.get(key)
        if running is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(running), True
        future = asyncio.ensure_future(work())
        self._in_flight[key] = future
        try:
            return await future, False
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
