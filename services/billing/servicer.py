"""BillingService's gRPC layer: proto in, rules, settlement and storage, proto out."""

from __future__ import annotations

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import billing_pb2_grpc, events_pb2
from services.billing import events, messages, ratecard
from services.billing.storage import BillingStore
from services.runtime.errors import NotFound


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, store: BillingStore, on_event=lambda: None) -> None:
        self._store = store
        self._on_event = on_event  # nudges the outbox relay so events leave without waiting for a poll

    # ------------------------------------------------------------ rate card

    async def SetZipRate(self, request: pb.SetZipRateRequest, context: grpc.aio.ServicerContext) -> pb.SetZipRateResponse:
        ratecard.validate_zip_rate(request.zip, request.rate_cents, request.HasField("effective_from"), request.set_by)

        def event(previous_cents: int) -> bytes:
            return events.payload(events_pb2.BillingEvent(zip_rate_changed=events_pb2.ZipRateChanged(
                zip=request.zip, rate_cents=request.rate_cents, effective_from=request.effective_from,
                previous_rate_cents=previous_cents, set_by=request.set_by,
            )))

        row = await self._store.set_zip_rate(
            request.zip, request.rate_cents, messages.to_datetime(request.effective_from), request.set_by, event
        )
        self._on_event()
        return pb.SetZipRateResponse(rate=messages.zip_rate(row))

    async def SetBookingFee(
        self, request: pb.SetBookingFeeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetBookingFeeResponse:
        ratecard.validate_booking_fee(request.fee_cents, request.HasField("effective_from"), request.set_by)

        def event(previous_cents: int) -> bytes:
            return events.payload(events_pb2.BillingEvent(booking_fee_changed=events_pb2.BookingFeeChanged(
                fee_cents=request.fee_cents, effective_from=request.effective_from,
                previous_fee_cents=previous_cents, set_by=request.set_by,
            )))

        row = await self._store.set_booking_fee(
            request.fee_cents, messages.to_datetime(request.effective_from), request.set_by, event
        )
        self._on_event()
        return pb.SetBookingFeeResponse(booking_fee=messages.booking_fee(row))

    async def GetRateCard(self, request: pb.GetRateCardRequest, context: grpc.aio.ServicerContext) -> pb.GetRateCardResponse:
        if request.zip:
            ratecard.require_zip(request.zip)
        size = ratecard.page_size(request.page_size, ratecard.DEFAULT_RATE_PAGE, ratecard.MAX_RATE_PAGE)
        after = ratecard.decode_position(request.page_token)
        as_of = messages.to_datetime(request.as_of) if request.HasField("as_of") else await self._store.now()
        rows = await self._store.zip_rates(request.zip or None, as_of, request.include_history, after, size + 1)
        if request.zip and not rows and after is None:
            raise NotFound(
                f"ZIP {request.zip} has no rate in effect at {as_of.isoformat()}; an operator sets one with SetZipRate",
                reason="ZIP_NOT_PRICED", zip=request.zip,
            )
        more = len(rows) > size
        rows = rows[:size]
        fees = await self._store.booking_fees()
        current = next((f for f in reversed(fees) if f["effective_from"] <= as_of), fees[0])
        return pb.GetRateCardResponse(
            rates=[messages.zip_rate(r) for r in rows],
            booking_fee=messages.booking_fee(current),
            booking_fee_history=[messages.booking_fee(f) for f in fees] if request.include_history else [],
            next_page_token=(
                ratecard.encode_position(rows[-1]["zip"], rows[-1]["effective_from"]) if more else ""
            ),
        )
