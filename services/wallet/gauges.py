"""Gauges that need a query: refreshed in the background, read by the metrics exporter from memory
(an observable gauge's callback is synchronous and must not touch the database)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from opentelemetry.metrics import CallbackOptions, Observation

from services.runtime import telemetry
from services.runtime.background import cancel_and_wait

log = logging.getLogger("callersync.wallet.gauges")
# Instruments are per process, servers may be several (tests): the gauge reports the newest one's count.
_current: list[PausedContractors] = []


def _observe(_options: CallbackOptions) -> list[Observation]:
    count = _current[-1]._count if _current else None
    return [] if count is None else [Observation(count)]


telemetry.meter("wallet").create_observable_gauge(
    "wallet.paused_contractors", callbacks=[_observe], description="contractors paused for low balance"
)


class PausedContractors:
    def __init__(self, pool: asyncpg.Pool, every_s: float = 15.0) -> None:
        self._pool = pool
        self._every_s = every_s
        self._count: int | None = None
        self._task: asyncio.Task[None] | None = None
        _current.append(self)

    async def refresh(self) -> int:
        self._count = await self._pool.fetchval("SELECT count(*) FROM wallet.wallets WHERE paused")
        return self._count

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wallet-paused-gauge")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self in _current:
            _current.remove(self)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError) as err:
                log.warning("paused-contractors gauge not refreshed: %s", err)
            await asyncio.sleep(self._every_s)
