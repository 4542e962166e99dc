"""Asks billing for rates when the events stream may not have told routing: for one ZIP routing has not heard
of (a ZIP priced before routing's consumer group existed, or a lagging consumer), and for the whole card when
the consumer group had to be created (a first start, or Redis lost the stream with events not yet read)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import grpc
import redis.asyncio as redis

from services.routing.clients import BillingClient
from services.routing.storage import RoutingStore, unpriced
from services.runtime.background import UntilDone
from services.runtime.errors import DomainError
from services.runtime.timestamps import to_datetime

log = logging.getLogger("callersync.routing.rate_card")


class RateCard:
    def __init__(self, store: RoutingStore, billing: BillingClient | None,
                 on_resync: Callable[[], Awaitable[None]] | None = None,
                 retry_s: float = 2.0, max_retry_s: float = 60.0) -> None:
        self._store = store
        self._billing = billing
        self._on_resync = on_resync
        self._resync = UntilDone("re-reading billing's rate card", self._resync_step, retry_s=retry_s,
                                 max_retry_s=max_retry_s,
                                 retry_on=(DomainError, grpc.aio.AioRpcError, redis.RedisError), logger=log)

    async def require_priced(self, zip_code: str) -> int:
        """The ZIP's rate in effect now, asking billing when routing does not know it; FAILED_PRECONDITION
        when billing has none either."""
        rate = await self._store.current_rate(zip_code)
        if rate is not None:
            return rate
        await self.fetch(zip_code)
        rate = await self._store.current_rate(zip_code)
        if rate is None:
            raise unpriced(zip_code)
        return rate

    async def fetch(self, zip_code: str) -> None:
        reply = await self._billing.rate_card_of(zip_code) if self._billing is not None else None
        if reply is None:
            return
        rates = [(r.zip, to_datetime(r.effective_from), r.rate_cents)
                 for r in reply.rates if r.zip == zip_code and r.rate_cents > 0]
        fees = [(to_datetime(f.effective_from), f.fee_cents)
                for f in [reply.booking_fee, *reply.booking_fee_history]
                if f.fee_cents > 0 and f.HasField("effective_from")]
        await self._store.store_rate_card(rates, fees)

    def start_resync(self) -> None:
        """Re-reads the whole card in the background, retrying until billing answers (routing keeps serving
        from what it has meanwhile). A request while one runs starts nothing more: the running one reads it all."""
        if self._billing is not None:
            self._resync.start()

    async def resynced(self) -> int:
        """Waits for the running re-read, if any; how many versions it changed."""
        return await self._resync.result() or 0

    async def stop(self) -> None:
        await self._resync.stop()

    async def _resync_step(self) -> int:
        changed = await self.resync_all()
        if self._on_resync is not None:  # always, cheap and rare: a retry after a failure here sees no change
            await self._on_resync()
        log.info("re-read billing's rate card: %d versions changed here", changed)
        return changed

    async def resync_all(self) -> int:
        billing = self._billing
        assert billing is not None, "start_resync runs this only when routing has a billing to ask"
        rates: list[tuple[str, dt.datetime, int]] = []
        fees: dict[dt.datetime, int] = {}
        token = ""
        while True:
            reply = await billing.rate_card_page(token)
            rates += [(r.zip, to_datetime(r.effective_from), r.rate_cents)
                      for r in reply.rates if r.rate_cents > 0]
            fees.update((to_datetime(f.effective_from), f.fee_cents)
                        for f in [reply.booking_fee, *reply.booking_fee_history]
                        if f.fee_cents > 0 and f.HasField("effective_from"))
            token = reply.next_page_token
            if not token:
                break
        return await self._store.resync_rate_card(rates, sorted(fees.items()), "re-read from billing")
