"""Asks billing for a ZIP's rates when routing has not heard of the ZIP (the events stream is the usual
source; this covers a ZIP priced before routing's consumer group existed, or a lagging consumer)."""

from __future__ import annotations

import datetime as dt
import logging

import grpc

from callersync.billing.v1 import billing_pb2, billing_pb2_grpc
from services.routing.storage import RoutingStore, unpriced
from services.runtime.errors import Unavailable

log = logging.getLogger("callersync.routing.rate_card")


class RateCard:
    def __init__(self, store: RoutingStore, billing: billing_pb2_grpc.BillingServiceStub | None,
                 timeout_s: float = 2.0) -> None:
        self._store = store
        self._billing = billing
        self._timeout_s = timeout_s

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
        if self._billing is None:
            return
        try:
            reply = await self._billing.GetRateCard(
                billing_pb2.GetRateCardRequest(zip=zip_code, include_history=True), timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
                log.info("billing has no rate for %s (%s)", zip_code, err.code().name)
                return
            raise Unavailable(f"billing could not be asked for the rate of ZIP {zip_code} ({err.code().name}); "
                              "retry", reason="BILLING_UNAVAILABLE") from err
        rates = [(r.zip, r.effective_from.ToDatetime(tzinfo=dt.UTC), r.rate_cents)
                 for r in reply.rates if r.zip == zip_code and r.rate_cents > 0]
        fees = [(f.effective_from.ToDatetime(tzinfo=dt.UTC), f.fee_cents)
                for f in [reply.booking_fee, *reply.booking_fee_history]
                if f.fee_cents > 0 and f.HasField("effective_from")]
        await self._store.store_rate_card(rates, fees)
