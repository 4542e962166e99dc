"""The sweeper: re-drives settlements a crash or a wallet outage left 'settling', with the same keys."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from services.billing.bookings import Bookings
from services.billing.call_settlement import CallSettler
from services.billing.refund_credit import RefundCredit
from services.billing.storage import BillingStore
from services.runtime.background import Loop
from services.runtime.errors import DomainError

log = logging.getLogger("callersync.billing.settlement")


class Sweeper:
    def __init__(self, store: BillingStore, calls: CallSettler, bookings: Bookings, refunds: RefundCredit) -> None:
        self._store = store
        self._calls = calls
        self._bookings = bookings
        self._refunds = refunds

    async def sweep_once(self, older_than_s: float, limit: int = 100) -> int:
        """Re-drives settlements left unfinished by a crash or an outage; returns how many it finished."""
        todo = await self._store.settling(older_than_s, limit)
        done = 0
        if todo.calls:
            rows = await self._store.rated_calls(todo.calls)
            settled, failed = await self._calls.settle([r for r in rows if r.state == "settling"])
            done += len(settled)
            for err in failed.values():
                log.warning("settlement still unfinished: %s", err.message)
        for booking_id in todo.bookings:
            done += await _redrive(self._store.get_booking(booking_id), self._bookings.settle)
        for case_id in todo.refunds:
            done += await _redrive(self._store.get_case(case_id), self._refunds.credit_refund)
        return done

    def loop(self, interval_s: float, older_than_s: float) -> Loop:
        """Sweeps every interval_s."""
        return Loop("settlement sweeper", lambda: self.sweep_once(older_than_s), lambda: asyncio.sleep(interval_s))


async def _redrive(fetch: Awaitable[Any | None], settle: Callable[[Any], Awaitable[Any]]) -> int:
    row = await fetch
    if row is None:
        return 0
    try:
        await settle(row)
        return 1
    except DomainError as err:
        log.warning("settlement still unfinished: %s", err.message)
        return 0
