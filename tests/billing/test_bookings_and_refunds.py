"""AI bookings charged once at the fee in effect; refund cases by the product's table, credited once."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import billing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.billing.app import BILLING
from services.billing.config import BillingConfig
from services.runtime.interceptors import error_reason
from tests.billing.calls import call, connected
from tests.billing.support import at, set_rate, stream_events, unique_zip
from tests.conftest import serving
from tests.wallet.support import expect_error, ledger, top_up


def booking_request(contractor, when=None, booking_id=None, call_id="call-ai-1"):
    when = when or dt.datetime.now(dt.UTC)
    return pb.RecordBookingRequest(booking_id=booking_id or f"bk-{uuid.uuid4().hex[:10]}", call_id=call_id,
                                   contractor_id=contractor, scheduled_at=at(when))


async def billed_call(billing, wallet, contractor, cents=4500, **kw):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, cents)
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 60.0), zip_code=zip_code, **kw)
    return c, (await billing.RateCall(pb.RateCallRequest(call=c))).decision


def refund(contractor, charge_id, reason, key=None, amount=0, note="please"):
    return pb.RequestRefundRequest(contractor_id=contractor, charge_id=charge_id, reason=reason, note=note,
                                   amount_cents=amount, idempotency_key=key or uuid.uuid4().hex)


async def test_a_booking_is_charged_the_flat_fee_once_whatever_the_call_length(billing, wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    req = booking_request(contractor)
    replies = await asyncio.gather(*(billing.RecordBooking(req) for _ in range(5)))
    assert len({r.booking.SerializeToString() for r in replies}) == 1
    assert sum(not r.replayed for r in replies) == 1
    first = replies[0]
    assert (first.booking.fee_cents, first.charge.amount_cents, first.charge.kind) == (2500, 2500,
                                                                                      pb.CHARGE_KIND_BOOKING)
    assert first.charge.wallet_entry_id == first.booking.wallet_entry_id
    assert await ledger(db, contractor) == (7500, 2, 7500)


async def test_a_booking_id_with_other_details_is_refused(billing, wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    req = booking_request(contractor)
    await billing.RecordBooking(req)
    other = pb.RecordBookingRequest()
    other.CopyFrom(req)
    other.call_id = "another-call"
    await expect_error(billing.RecordBooking(other), grpc.StatusCode.ALREADY_EXISTS)


async def test_a_booking_is_billed_at_the_fee_in_effect_when_it_was_scheduled(billing_settings, wallet, contractor):
    # The session's booking fee must stay 2500 for other tests, so this one prices and books in year 2997, on a
    # billing of its own that tolerates a clock ~1000 years ahead (the default refuses such a booking, below).
    tolerant = dataclasses.replace(BillingConfig.from_env(), clock_skew_s=40_000_000_000)
    server = await BILLING.build(billing_settings, 0, tolerant)
    async with serving(server) as target, grpc.aio.insecure_channel(target) as channel:
        await _fee_in_effect_when_scheduled(billing_pb2_grpc.BillingServiceStub(channel), wallet, contractor)


async def test_a_booking_in_the_future_is_refused_and_charges_nothing(billing, wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    for when in (dt.datetime(9999, 12, 31, tzinfo=dt.UTC), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=70)):
        req = booking_request(contractor, when)
        err = await expect_error(billing.RecordBooking(req), grpc.StatusCode.INVALID_ARGUMENT)
        assert "scheduled_at" in err.details() and "future" in err.details()
        assert await db.fetchval("SELECT count(*) FROM billing.bookings WHERE booking_id = $1", req.booking_id) == 0
    # Within the allowed clock skew, a booking stamped a little ahead is billed.
    await billing.RecordBooking(booking_request(contractor, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)))
    # The appointment itself may be ahead, but not centuries.
    far = booking_request(contractor)
    far.appointment_at.FromDatetime(dt.datetime(2999, 1, 1))
    err = await expect_error(billing.RecordBooking(far), grpc.StatusCode.INVALID_ARGUMENT)
    assert "appointment_at" in err.details()
    near = booking_request(contractor)
    near.appointment_at.FromDatetime(dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=90))
    await billing.RecordBooking(near)
    assert await ledger(db, contractor) == (10_000 - 2 * 2500, 3, 10_000 - 2 * 2500)


async def test_a_booking_before_any_fee_was_in_effect_is_refused_and_charges_nothing(billing, wallet, db, contractor):
    """No fee existed before CALLERSYNC_RATE_EARLIEST_S (2020-01-01), so no booking from then is charged (the fee
    lookup would otherwise take the first fee)."""
    await top_up(wallet, contractor, 10_000)
    for when in (dt.datetime(2019, 12, 31, 23, 59, tzinfo=dt.UTC), dt.datetime(1, 1, 1, 1, tzinfo=dt.UTC)):
        req = booking_request(contractor, when)
        err = await expect_error(billing.RecordBooking(req), grpc.StatusCode.INVALID_ARGUMENT)
        assert "scheduled_at is before 2020-01-01" in err.details()
        assert error_reason(err) == "TIMESTAMP_TOO_EARLY"
        assert await db.fetchval("SELECT count(*) FROM billing.bookings WHERE booking_id = $1", req.booking_id) == 0
    await billing.RecordBooking(booking_request(contractor, dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    assert await ledger(db, contractor) == (10_000 - 2500, 2, 10_000 - 2500)


async def _fee_in_effect_when_scheduled(billing, wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    await billing.SetBookingFee(pb.SetBookingFeeRequest(fee_cents=4000, effective_from=at("2997-01-01T00:00:00+00:00"),
                                                        set_by="ops"))
    reply = await billing.RecordBooking(booking_request(contractor, dt.datetime(2997, 2, 1, tzinfo=dt.UTC)))
    assert reply.booking.fee_cents == 4000
    err = await expect_error(
        billing.SetBookingFee(pb.SetBookingFeeRequest(fee_cents=4100, effective_from=at("2996-12-01T00:00:00+00:00"),
                                                      set_by="ops")),
        grpc.StatusCode.FAILED_PRECONDITION)
    assert "already billed" in err.details()


async def test_a_booking_for_a_contractor_without_a_wallet_is_refused_by_name(billing, db, contractor):
    req = booking_request(contractor)
    err = await expect_error(billing.RecordBooking(req), grpc.StatusCode.FAILED_PRECONDITION)
    assert contractor in err.details()
    assert await db.fetchval("SELECT count(*) FROM billing.bookings WHERE booking_id = $1", req.booking_id) == 0


async def test_ineligible_reasons_are_rejected_at_once_in_the_policys_words(billing, wallet, contractor):
    _, d = await billed_call(billing, wallet, contractor)
    case = (await billing.RequestRefund(
        refund(contractor, d.charge_id, pb.REFUND_REASON_DID_NOT_CLOSE_SALE))).refund_case
    assert case.state == pb.REFUND_STATE_REJECTED_INELIGIBLE and case.auto_resolved
    assert "sales question, not a billing one" in case.resolution_note
    for reason in (pb.REFUND_REASON_CUSTOMER_NOT_SERVED, pb.REFUND_REASON_SERVICE_QUALITY_DISPUTE):
        again = (await billing.RequestRefund(refund(contractor, d.charge_id, reason))).refund_case
        assert again.state == pb.REFUND_STATE_REJECTED_INELIGIBLE and again.refund_entry_id == 0


async def test_approved_spam_refund_credits_once_and_asks_routing_to_block_the_caller(billing, wallet, db, redis_client,
                                                                                      contractor):
    c, d = await billed_call(billing, wallet, contractor, caller="+13125550188")
    key = uuid.uuid4().hex
    case = (await billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SPAM, key=key))).refund_case
    assert case.state == pb.REFUND_STATE_PENDING_REVIEW and not case.auto_resolved
    assert case.evidence.recording_uri == c.recording.uri and case.evidence.transcript_uri == c.transcript_uri
    assert (await billing.RequestRefund(
        refund(contractor, d.charge_id, pb.REFUND_REASON_SPAM, key=key))).refund_case == case
    err = await expect_error(billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SYSTEM_BUG)),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert case.refund_case_id in err.details()
    queue = await billing.ListRefundCases(pb.ListRefundCasesRequest(state=pb.REFUND_STATE_PENDING_REVIEW,
                                                                    contractor_id=contractor))
    assert [q.refund_case_id for q in queue.refund_cases] == [case.refund_case_id]

    resolve = pb.ResolveRefundRequest(refund_case_id=case.refund_case_id, resolution=pb.REFUND_RESOLUTION_APPROVE,
                                      reviewer="op-jane", note="robocall")
    resolved = await asyncio.gather(*(billing.ResolveRefund(resolve) for _ in range(5)))
    assert len({r.refund_case.refund_entry_id for r in resolved}) == 1
    done = resolved[0].refund_case
    assert done.state == pb.REFUND_STATE_APPROVED and done.refund_entry_id and done.reviewer == "op-jane"
    assert done.amount_cents == 4500
    assert await ledger(db, contractor) == (10_000, 3, 10_000)
    await expect_error(billing.ResolveRefund(pb.ResolveRefundRequest(
        refund_case_id=case.refund_case_id, resolution=pb.REFUND_RESOLUTION_DENY, reviewer="op-bob")),
        grpc.StatusCode.FAILED_PRECONDITION)
    blocks = await stream_events(redis_client, lambda e: e.WhichOneof("event") == "caller_block_requested"
                                 and e.caller_block_requested.refund_case_id == case.refund_case_id)
    block = blocks[0].caller_block_requested
    assert (block.caller_number, block.contractor_id, block.call_id, block.reviewer) == (
        "+13125550188", contractor, c.call_id, "op-jane")
    charge = (await billing.ListCharges(pb.ListChargesRequest(contractor_id=contractor))).charges[0]
    assert charge.refunded_cents == 4500 and charge.refund.state == pb.REFUND_STATE_APPROVED
    err = await expect_error(billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SYSTEM_BUG)),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert "already refunded" in err.details()


async def test_a_denied_case_moves_no_money(billing, wallet, db, contractor):
    _, d = await billed_call(billing, wallet, contractor)
    case = (await billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SYSTEM_BUG))).refund_case
    denied = (await billing.ResolveRefund(pb.ResolveRefundRequest(
        refund_case_id=case.refund_case_id, resolution=pb.REFUND_RESOLUTION_DENY, reviewer="op",
        note="fine"))).refund_case
    assert denied.state == pb.REFUND_STATE_DENIED and denied.refund_entry_id == 0
    assert await ledger(db, contractor) == (5500, 2, 5500)


async def test_a_charge_missing_its_recording_cannot_be_defended_so_the_refund_is_approved(billing, wallet, db,
                                                                                           contractor):
    _, d = await billed_call(billing, wallet, contractor, recording=False)
    case = (await billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SPAM))).refund_case
    assert case.state == pb.REFUND_STATE_APPROVED and case.auto_resolved and case.refund_entry_id
    assert "recording" in case.resolution_note
    assert await ledger(db, contractor) == (10_000, 3, 10_000)
    # Decided at the moment it was asked: one clock reading, not resolved 0.2 ms before it was requested.
    assert case.resolved_at.ToDatetime() == case.requested_at.ToDatetime()


async def test_cases_decided_at_once_are_resolved_when_requested_and_reviewed_ones_after(billing, wallet, contractor):
    _, d = await billed_call(billing, wallet, contractor)
    for _ in range(20):  # the two readings used to be milliseconds apart, in whichever order
        rejected = (await billing.RequestRefund(
            refund(contractor, d.charge_id, pb.REFUND_REASON_DID_NOT_CLOSE_SALE))).refund_case
        assert rejected.resolved_at.ToDatetime() == rejected.requested_at.ToDatetime()
    pending = (await billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SYSTEM_BUG))).refund_case
    assert not pending.HasField("resolved_at")
    denied = (await billing.ResolveRefund(pb.ResolveRefundRequest(
        refund_case_id=pending.refund_case_id, resolution=pb.REFUND_RESOLUTION_DENY, reviewer="op"))).refund_case
    assert denied.resolved_at.ToDatetime() >= denied.requested_at.ToDatetime()


async def test_a_double_bill_is_approved_only_when_the_ledger_shows_it(billing, wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    single = await billing.RecordBooking(booking_request(contractor))
    rejected = (await billing.RequestRefund(refund(contractor, single.charge.charge_id,
                                                   pb.REFUND_REASON_DOUBLE_BILL))).refund_case
    assert rejected.state == pb.REFUND_STATE_REJECTED_NOT_DUPLICATE
    doubled = await billing.RecordBooking(booking_request(contractor))
    # A platform error charged the same booking a second time, straight in the wallet.
    await wallet.Charge(wpb.ChargeRequest(contractor_id=contractor, amount_cents=2500, idempotency_key=uuid.uuid4().hex,
                                          reference=doubled.booking.booking_id))
    approved = (await billing.RequestRefund(refund(contractor, doubled.charge.charge_id,
                                                   pb.REFUND_REASON_DOUBLE_BILL))).refund_case
    assert approved.state == pb.REFUND_STATE_APPROVED and approved.duplicate_of_charge_id
    assert await ledger(db, contractor) == (10_000 - 2500 * 3 + 2500, 5, 5000)


async def test_requests_after_the_refund_window_are_rejected_with_a_clear_message(billing, wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    old = await billing.RecordBooking(booking_request(contractor, dt.datetime.now(dt.UTC) - dt.timedelta(days=31)))
    case = (await billing.RequestRefund(refund(contractor, old.charge.charge_id, pb.REFUND_REASON_SPAM))).refund_case
    assert case.state == pb.REFUND_STATE_REJECTED_OUT_OF_WINDOW and case.refund_entry_id == 0
    assert "within 30 days" in case.resolution_note


async def test_refund_requests_are_checked_before_anything_is_written(billing, wallet, contractor):
    _, d = await billed_call(billing, wallet, contractor)
    await expect_error(billing.RequestRefund(refund("someone-else", d.charge_id, pb.REFUND_REASON_SPAM)),
                       grpc.StatusCode.NOT_FOUND)
    await expect_error(billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_UNSPECIFIED)),
                       grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SPAM, amount=4501)),
                       grpc.StatusCode.INVALID_ARGUMENT)
    key = uuid.uuid4().hex
    await billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_DID_NOT_CLOSE_SALE, key=key))
    await expect_error(billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SPAM, key=key)),
                       grpc.StatusCode.ALREADY_EXISTS)


async def test_automatic_approvals_of_undefendable_charges_are_limited_per_contractor(billing, wallet, db, contractor):
    """The 6th and later refunds of charges without a recording in 30 days wait for an operator, even when the
    requests race: the allowance (CALLERSYNC_REFUND_AUTO_APPROVALS_PER_30D, 5) is counted in PostgreSQL."""
    charges = [(await billed_call(billing, wallet, contractor, recording=False))[1].charge_id for _ in range(8)]
    cases = [r.refund_case for r in await asyncio.gather(*(
        billing.RequestRefund(refund(contractor, c, pb.REFUND_REASON_SPAM)) for c in charges))]
    approved = [c for c in cases if c.state == pb.REFUND_STATE_APPROVED]
    held = [c for c in cases if c.state == pb.REFUND_STATE_PENDING_REVIEW]
    assert (len(approved), len(held)) == (5, 3)
    assert all(c.refund_entry_id == 0 and not c.auto_resolved and "Waiting for an operator" in c.resolution_note
               for c in held)
    assert await ledger(db, contractor) == (8 * 10_000 - 3 * 4500, 8 * 2 + 5, 8 * 10_000 - 3 * 4500)
    # An operator approves one of the held cases: credited once, and it does not use up an automatic approval.
    resolved = (await billing.ResolveRefund(pb.ResolveRefundRequest(
        refund_case_id=held[0].refund_case_id, resolution=pb.REFUND_RESOLUTION_APPROVE, reviewer="ops"))).refund_case
    assert resolved.state == pb.REFUND_STATE_APPROVED and resolved.refund_entry_id
    assert await db.fetchval("SELECT count(*) FROM billing.refund_cases WHERE contractor_id = $1"
                             " AND counts_as_auto_approval", contractor) == 5
    # Another contractor's allowance is its own.
    other = f"ctr-{uuid.uuid4().hex[:10]}"
    _, d = await billed_call(billing, wallet, other, recording=False)
    case = (await billing.RequestRefund(refund(other, d.charge_id, pb.REFUND_REASON_SPAM))).refund_case
    assert case.state == pb.REFUND_STATE_APPROVED
