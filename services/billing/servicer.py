"""BillingService's gRPC layer: validate, call the use case (rating, bookings, refund desk), map to proto."""

from __future__ import annotations

import datetime as dt
import logging

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import billing_pb2_grpc, events_pb2
from services.billing import contractor_calls, events, explain, freshness, mappers, ratecard
from services.billing.bookings import Bookings
from services.billing.calls_storage import ContractorCalls
from services.billing.freshness import FactLimits
from services.billing.rating import Rater
from services.billing.refund_desk import RefundDesk
from services.billing.storage import BillingStore
from services.runtime import authz
from services.runtime.errors import DomainError, InvalidArgument, NotFound
from services.runtime.paging import decode_position, encode_position, page_of, page_size
from services.runtime.timestamps import to_datetime
from services.runtime.validation import require_id, require_zip

log = logging.getLogger("callersync.billing")

# A batch is rated, stored and settled together (one SettleCalls, a few statements), so it is bounded by the
# wallet's SettleCalls limit.
MAX_BATCH = 1000
DEFAULT_RATE_PAGE = 100
MAX_RATE_PAGE = 1000


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, store: BillingStore, rater: Rater, bookings: Bookings, desk: RefundDesk,
                 calls: ContractorCalls, on_event, limits: FactLimits) -> None:
        self._limits = limits
        self._store = store
        self._rater = rater
        self._bookings = bookings
        self._desk = desk
        self._on_event = on_event  # nudges the outbox relay so events leave without waiting for a poll
        self._calls = calls

    # ------------------------------------------------------------ rate card

    async def SetZipRate(
        self, request: pb.SetZipRateRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetZipRateResponse:
        ratecard.validate_zip_rate(request.zip, request.rate_cents, request.HasField("effective_from"), request.set_by)
        freshness.check_effective_from(request.effective_from, self._limits)

        def event(previous_cents: int) -> bytes:
            return events.payload(events_pb2.BillingEvent(zip_rate_changed=events_pb2.ZipRateChanged(
                zip=request.zip, rate_cents=request.rate_cents, effective_from=request.effective_from,
                previous_rate_cents=previous_cents, set_by=request.set_by,
            )))

        row = await self._store.set_zip_rate(
            request.zip, request.rate_cents, to_datetime(request.effective_from), request.set_by, event
        )
        self._on_event()
        return pb.SetZipRateResponse(rate=mappers.zip_rate(row))

    async def SetBookingFee(
        self, request: pb.SetBookingFeeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetBookingFeeResponse:
        ratecard.validate_booking_fee(request.fee_cents, request.HasField("effective_from"), request.set_by)
        freshness.check_effective_from(request.effective_from, self._limits)

        def event(previous_cents: int) -> bytes:
            return events.payload(events_pb2.BillingEvent(booking_fee_changed=events_pb2.BookingFeeChanged(
                fee_cents=request.fee_cents, effective_from=request.effective_from,
                previous_fee_cents=previous_cents, set_by=request.set_by,
            )))

        row = await self._store.set_booking_fee(
            request.fee_cents, to_datetime(request.effective_from), request.set_by, event
        )
        self._on_event()
        return pb.SetBookingFeeResponse(booking_fee=mappers.booking_fee(row))

    async def GetRateCard(
        self, request: pb.GetRateCardRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRateCardResponse:
        if request.zip:
            require_zip(request.zip)
        size = page_size(request.page_size, DEFAULT_RATE_PAGE, MAX_RATE_PAGE)
        position = decode_position(request.page_token)
        after = (str(position[1]), position[0]) if position else None
        as_of = to_datetime(request.as_of) if request.HasField("as_of") else await self._store.now()
        rows = await self._store.zip_rates(request.zip or None, as_of, request.include_history, after, size + 1)
        if request.zip and not rows and after is None:
            raise NotFound(
                f"ZIP {request.zip} has no rate in effect at {as_of.isoformat()}; an operator sets one with SetZipRate",
                reason="ZIP_NOT_PRICED", zip=request.zip,
            )
        rows, next_token = page_of(rows, size, lambda r: encode_position(r.zip, r.effective_from))
        fees = await self._store.booking_fees()
        current = next((f for f in reversed(fees) if f.effective_from <= as_of), fees[0])
        return pb.GetRateCardResponse(
            rates=[mappers.zip_rate(r) for r in rows],
            booking_fee=mappers.booking_fee(current),
            booking_fee_history=[mappers.booking_fee(f) for f in fees] if request.include_history else [],
            next_page_token=next_token,
        )

    # ------------------------------------------------------------ finished calls

    async def RateCall(self, request: pb.RateCallRequest, context: grpc.aio.ServicerContext) -> pb.RateCallResponse:
        row, replayed = await self._rater.rate_call(request.call)
        return pb.RateCallResponse(decision=mappers.decision(row), replayed=replayed)

    async def RateCalls(self, request: pb.RateCallsRequest, context: grpc.aio.ServicerContext) -> pb.RateCallsResponse:
        if not request.calls:
            raise InvalidArgument("calls must hold at least one finished call", field="calls")
        if len(request.calls) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} calls per batch; got {len(request.calls)}", field="calls")
        results = []
        for call, outcome in zip(request.calls, await self._rater.rate_calls(list(request.calls)), strict=True):
            if isinstance(outcome, DomainError):
                results.append(pb.CallResult(call_id=call.call_id, code=outcome.code.value[0], message=outcome.message,
                                             reason=outcome.reason, refusal=mappers.refusal(outcome.reason)))
            else:
                row, replayed = outcome
                results.append(pb.CallResult(call_id=call.call_id, decision=mappers.decision(row), replayed=replayed))
        return pb.RateCallsResponse(results=results)

    async def ExplainCall(
        self, request: pb.ExplainCallRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainCallResponse:
        require_id("call_id", request.call_id)
        rated = await self._store.get_rated_call(request.call_id)
        charges = await self._store.charges_of_call(request.call_id)
        bookings = await self._store.bookings_of_call(request.call_id)
        if rated is None and not bookings:
            raise NotFound(f"billing has no record of call {request.call_id!r}: it was never rated and booked "
                           "nothing", reason="NO_CALL")
        facts = pb.FinishedCall.FromString(rated.facts) if rated else None
        if request.contractor_id and not explain.concerns(request.contractor_id, facts, charges, bookings):
            # The same answer as an unknown call: a contractor learns nothing about calls that are not theirs.
            raise NotFound(f"billing has no record of call {request.call_id!r} for contractor "
                           f"{request.contractor_id!r}", reason="NO_CALL")
        cases = await self._store.cases(None, None, [c.charge_id for c in charges], None, 1000)
        cases = list(reversed(cases))
        latest = {c.charge_id: c for c in cases}
        return pb.ExplainCallResponse(
            call=facts,
            decision=mappers.decision(rated) if rated else None,
            charges=[mappers.charge(c, rated if c.kind == "call" else None, latest.get(c.charge_id))
                     for c in charges],
            refund_cases=[mappers.refund_case(c) for c in cases],
            bookings=[mappers.booking(b) for b in bookings],
            explanation=explain.story(request.call_id, rated, charges, cases, bookings),
        )

    async def ListCharges(
        self, request: pb.ListChargesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChargesResponse:
        require_id("contractor_id", request.contractor_id)
        size = page_size(request.page_size, 50, 500)
        position = decode_position(request.page_token)
        before = (position[0], str(position[1])) if position else None
        rows, next_token = page_of(await self._store.charges_of_contractor(request.contractor_id, before, size + 1),
                                   size, lambda c: encode_position(c.charge_id, c.charged_at))
        decisions = {r.call_id: r for r in await self._store.rated_calls(
            [c.call_id for c in rows if c.kind == "call"])}
        cases = await self._store.latest_cases([c.charge_id for c in rows])
        return pb.ListChargesResponse(
            charges=[mappers.charge(c, decisions.get(c.call_id) if c.kind == "call" else None,
                                     cases.get(c.charge_id)) for c in rows],
            next_page_token=next_token,
        )

    async def ListContractorCalls(
        self, request: pb.ListContractorCallsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContractorCallsResponse:
        require_id("contractor_id", request.contractor_id)
        size = page_size(request.page_size, 50, 500)
        position = decode_position(request.page_token)
        before = (position[0], str(position[1])) if position else None
        since = to_datetime(request.since) if request.HasField("since") else None
        rows, next_token = page_of(await self._calls.page(request.contractor_id, since, before, size + 1), size,
                                   lambda c: encode_position(c.call_id, c.started_at))
        return pb.ListContractorCallsResponse(
            calls=[contractor_calls.for_contractor(r, request.contractor_id) for r in rows],
            next_page_token=next_token,
        )

    async def GetContractorCallStats(
        self, request: pb.GetContractorCallStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContractorCallStatsResponse:
        require_id("contractor_id", request.contractor_id)
        first, days = contractor_calls.stats_period(request.days, dt.datetime.now(dt.UTC).date())
        rows = await self._calls.per_day(request.contractor_id, first, days)
        return pb.GetContractorCallStatsResponse(days=[
            pb.CallDay(date=r.day.isoformat(), billable_calls=r.billable_calls,
                       billable_cents=r.billable_cents, free_calls=r.free_calls) for r in rows])

    # ------------------------------------------------------------ bookings

    async def RecordBooking(
        self, request: pb.RecordBookingRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordBookingResponse:
        require_id("booking_id", request.booking_id)
        require_id("call_id", request.call_id)
        require_id("contractor_id", request.contractor_id)
        if not request.HasField("scheduled_at"):
            raise InvalidArgument("scheduled_at is required: the bill is raised for that moment", field="scheduled_at")
        freshness.check_booking(request, self._limits)
        row, replayed = await self._bookings.record(request)
        charge = await self._store.get_charge(row.charge_id)
        assert charge is not None  # record() returns a settled booking, whose charge row came in the same transaction
        return pb.RecordBookingResponse(
            booking=mappers.booking(row), charge=mappers.charge(charge, None, None), replayed=replayed
        )

    # ------------------------------------------------------------ refunds

    async def RequestRefund(
        self, request: pb.RequestRefundRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestRefundResponse:
        return pb.RequestRefundResponse(refund_case=mappers.refund_case(await self._desk.request(request)))

    async def ResolveRefund(
        self, request: pb.ResolveRefundRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveRefundResponse:
        case = await self._desk.resolve(request, acting=authz.acting_person(context))
        return pb.ResolveRefundResponse(refund_case=mappers.refund_case(case))

    async def GetRefundCase(
        self, request: pb.GetRefundCaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRefundCaseResponse:
        return pb.GetRefundCaseResponse(refund_case=mappers.refund_case(await self._desk.get_case(request)))

    async def ListRefundCases(
        self, request: pb.ListRefundCasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRefundCasesResponse:
        rows, token = await self._desk.list_cases(request)
        return pb.ListRefundCasesResponse(refund_cases=[mappers.refund_case(r) for r in rows], next_page_token=token)

    # ------------------------------------------------------------ events

    async def ReplayEvents(
        self, request: pb.ReplayEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayEventsResponse:
        require_id("requested_by", request.requested_by)
        since = to_datetime(request.since) if request.HasField("since") else None
        queued = await self._store.republish(since)
        # Routing asks on every start (fresh or after Redis lost its streams): routine, so INFO; WARNING is for
        # what an on-call engineer should look at.
        log.info("%s asked to replay billing's events since %s: %d queued for publication again",
                 request.requested_by, since.isoformat() if since else "the beginning", queued)
        self._on_event()
        return pb.ReplayEventsResponse(events_queued=queued)
