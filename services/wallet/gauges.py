"""Gauges that need a query: refreshed in the background, read by the metrics exporter from memory
(an observable gauge's callback is synchronous and must not touch the database)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from opentelemetry.metrics import CallbackOptions, Observation

from services.runtime import telemetry
from services.runtime.background import Loop

# Instruments are per process, servers may be several (tests): the gauge reports the newest one's count.
_current: list[PausedContractors] = []


def _observe(_options: CallbackOptions) -> list[Observation]:
    count = _current[-1]._count if _current else None
    return [] if count is None else [Observation(count)]


telemetry.meter("wallet").create_observable_gauge(
    "wallet.paused_contractors", callbacks=[_observe], description="contractors paused for low balance"
)


class PausedContractors:
    def __init__(self, count_paused: Callable[[], Awaitable[int]], every_s: float = 15.0) -> None:
        self._count_paused = count_paused  # WalletStore.count_paused
        self._count: int | None = None
        self._loop = Loop("paused-contractors gauge", self.refresh, lambda: asyncio.sleep(every_s))
        _current.append(self)

    async def refresh(self) -> int:
        self._count = await self._count_paused()
        return self._count

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self in _current:
            _current.remove(self)
