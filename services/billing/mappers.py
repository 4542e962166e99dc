"""Billing's stored records to its proto messages (proto to domain is done where a request is read)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from services.billing.records import Booking, BookingFee, Charge, RatedCall, RefundCase, ZipRate
from services.runtime.errors import typed_reason
from services.runtime.timestamps import stamp

CHARGE_KINDS = {"call": pb.CHARGE_KIND_CALL, "booking": pb.CHARGE_KIND_BOOKING}
REFUND_STATES = {
    "pending_review": pb.REFUND_STATE_PENDING_REVIEW,
    "approved": pb.REFUND_STATE_APPROVED,
    "denied": pb.REFUND_STATE_DENIED,
    "rejected_ineligible": pb.REFUND_STATE_REJECTED_INELIGIBLE,
    "rejected_not_duplicate": pb.REFUND_STATE_REJECTED_NOT_DUPLICATE,
    "rejected_out_of_window": pb.REFUND_STATE_REJECTED_OUT_OF_WINDOW,
}
REFUND_STATE_NAMES = {v: k for k, v in REFUND_STATES.items()}


def refusal(reason: str) -> pb.BillingRefusal.ValueType:
    """The typed form of an ErrorInfo reason: the enum value named BILLING_REFUSAL_<reason>, else UNSPECIFIED
    (a reason the contract does not list yet, e.g. one the wallet passed through)."""
    return pb.BillingRefusal.ValueType(typed_reason(pb.BillingRefusal, "BILLING_REFUSAL_", reason))


def ts(value: dt.datetime | None) -> Timestamp | None:
    """None stays None, so a message field built from it stays unset."""
    return None if value is None else stamp(value)


def zip_rate(row: ZipRate) -> pb.ZipRate:
    return pb.ZipRate(
        zip=row.zip,
        rate_cents=row.rate_cents,
        effective_from=ts(row.effective_from),
        effective_until=ts(row.effective_until),
        set_by=row.set_by,
        created_at=ts(row.created_at),
    )


def booking_fee(row: BookingFee) -> pb.BookingFee:
    return pb.BookingFee(
        fee_cents=row.fee_cents,
        effective_from=ts(row.effective_from),
        effective_until=ts(row.effective_until),
        set_by=row.set_by,
        created_at=ts(row.created_at),
    )


def decision(row: RatedCall) -> pb.RatingDecision:
    """The stored decision, with the wallet entry once settled."""
    out = pb.RatingDecision.FromString(row.decision)
    out.wallet_entry_id = row.wallet_entry_id or 0
    if not out.billable:
        out.charge_id = ""
    return out


def evidence(row: Charge | RefundCase) -> pb.Evidence:
    return pb.Evidence(
        recording_uri=row.recording_uri, disclosure_played=row.disclosure_played,
        transcript_uri=row.transcript_uri,
    )


def refund_case(row: RefundCase) -> pb.RefundCase:
    return pb.RefundCase(
        refund_case_id=row.refund_case_id,
        charge_id=row.charge_id,
        contractor_id=row.contractor_id,
        reason=pb.RefundReason.Value(row.reason),
        note=row.note,
        state=REFUND_STATES[row.state],
        amount_cents=row.amount_cents,
        evidence=evidence(row),
        duplicate_of_charge_id=row.duplicate_of_charge_id,
        resolution_note=row.resolution_note,
        reviewer=row.reviewer,
        auto_resolved=row.auto_resolved,
        refund_entry_id=row.refund_entry_id or 0,
        requested_at=ts(row.requested_at),
        resolved_at=ts(row.resolved_at),
        requested_cents=row.requested_cents if row.requested_cents is not None else row.amount_cents,
        first_approver=row.first_approver,
        first_approved_at=ts(row.first_approved_at),
        first_approved_cents=row.first_approved_cents or 0,
    )


def charge(row: Charge, decision_row: RatedCall | None, case: RefundCase | None) -> pb.Charge:
    return pb.Charge(
        charge_id=row.charge_id,
        contractor_id=row.contractor_id,
        kind=CHARGE_KINDS[row.kind],
        call_id=row.call_id,
        booking_id=row.booking_id,
        zip=row.zip,
        amount_cents=row.amount_cents,
        wallet_entry_id=row.wallet_entry_id,
        charged_at=ts(row.charged_at),
        decision=decision(decision_row) if decision_row is not None else None,
        evidence=evidence(row),
        refund=refund_case(case) if case is not None else None,
        refunded_cents=row.refunded_cents,
    )


def booking(row: Booking) -> pb.Booking:
    return pb.Booking(
        booking_id=row.booking_id,
        call_id=row.call_id,
        contractor_id=row.contractor_id,
        scheduled_at=ts(row.scheduled_at),
        appointment_at=ts(row.appointment_at),
        fee_cents=row.fee_cents,
        fee_effective_from=ts(row.fee_effective_from),
        charge_id=row.charge_id,
        wallet_entry_id=row.wallet_entry_id or 0,
        recorded_at=ts(row.recorded_at),
    )
