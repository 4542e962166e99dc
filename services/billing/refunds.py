"""The refund table of product.md as plain functions: what happens to a request the moment it arrives."""

from __future__ import annotations

import dataclasses
import datetime as dt

from callersync.billing.v1 import billing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2
from services.billing import ratecard
from services.runtime.errors import InvalidArgument

# The policy's own words for the three reasons that are not refundable.
INELIGIBLE = {
    pb.REFUND_REASON_DID_NOT_CLOSE_SALE:
        "Refunds are not issued for calls you didn't close: that's a sales question, not a billing one.",
    pb.REFUND_REASON_CUSTOMER_NOT_SERVED:
        "Refunds are not issued for customers you didn't end up serving for reasons outside the platform.",
    pb.REFUND_REASON_SERVICE_QUALITY_DISPUTE:
        "Refunds are not issued for disputes about service quality between you and the homeowner.",
}
MAX_NOTE_LEN = 2000


@dataclasses.dataclass(frozen=True)
class Triage:
    state: str  # a refund_cases.state
    auto_resolved: bool
    resolution_note: str
    # Approved only because the charge cannot be defended (no recording or transcript), whatever the reason
    # given: such approvals are limited per contractor (allowance_exhausted), the rest go to an operator.
    undefendable: bool = False


def validate_request(contractor_id: str, charge_id: str, reason: int, note: str, amount_cents: int,
                     idempotency_key: str) -> None:
    ratecard.require_id("contractor_id", contractor_id)
    ratecard.require_id("charge_id", charge_id)
    ratecard.require_id("idempotency_key", idempotency_key, 200)
    if reason not in pb.RefundReason.values() or reason == pb.REFUND_REASON_UNSPECIFIED:
        raise InvalidArgument(
            "reason must be one of the refund reasons (spam, double bill, system bug, did not close the sale, "
            "customer not served, service quality dispute)", reason="UNKNOWN_REFUND_REASON", field="reason",
        )
    if len(note) > MAX_NOTE_LEN or "\x00" in note:
        raise InvalidArgument(f"note must be at most {MAX_NOTE_LEN} characters", field="note")
    if amount_cents < 0:
        raise InvalidArgument("amount_cents must not be negative (0 asks for the whole charge)", field="amount_cents")


def refund_amount(asked_cents: int, charge_cents: int, refunded_cents: int) -> int:
    """Policy: "a refund never exceeds the charge"; 0 asks for all that is left."""
    left = charge_cents - refunded_cents
    amount = asked_cents or left
    if amount > left:
        raise InvalidArgument(
            f"amount_cents {asked_cents} exceeds the {left} cents left unrefunded on this {charge_cents}-cent charge",
            reason="REFUND_EXCEEDS_CHARGE", field="amount_cents",
        )
    return amount


def window_closes(charged_at: dt.datetime, window_days: int) -> dt.datetime:
    return charged_at + dt.timedelta(days=window_days)


def triage(reason: int, charged_at: dt.datetime, now: dt.datetime, window_days: int, is_call: bool,
           has_recording: bool, has_transcript: bool, duplicate_found: bool | None) -> Triage:
    """Decides at once what can be decided without an operator. duplicate_found is the ledger's answer for a
    double bill (None when not asked). Policy: "Every billable call carries a recording ... and a transcript";
    a booking is proven by the appointment, so only a call charge is undefendable without them."""
    closes = window_closes(charged_at, window_days)
    if now > closes:
        return Triage("rejected_out_of_window", True,
                      f"Refunds must be requested within {window_days} days of the charge; this one was charged "
                      f"{charged_at:%Y-%m-%d} and the window closed {closes:%Y-%m-%d}.")
    if reason in INELIGIBLE:
        return Triage("rejected_ineligible", True, INELIGIBLE[reason])
    if is_call and not (has_recording and has_transcript):
        missing = " and ".join(w for w, ok in (("recording", has_recording), ("transcript", has_transcript)) if not ok)
        return Triage("approved", True,
                      f"Approved: the charge has no {missing}, the source of truth for a refund, so it cannot be "
                      "defended.", undefendable=True)
    if reason == pb.REFUND_REASON_DOUBLE_BILL:
        if duplicate_found:
            return Triage("approved", True, "Approved: the ledger shows this call or booking was charged twice.")
        return Triage("rejected_not_duplicate", True,
                      "Rejected: the ledger shows this call or booking was charged only once.")
    return Triage("pending_review", False, "")


def duplicate_entries(own_entry_id: int, references: set[str], entries, captured_entry_ids: set[int]) -> list[int]:
    """Other debits in the wallet ledger for the same call or booking: what proves a double bill."""
    debits = (wallet_pb2.ENTRY_KIND_CAPTURE, wallet_pb2.ENTRY_KIND_CHARGE)
    found = {e.entry_id for e in entries if e.kind in debits and e.reference in references}
    found |= captured_entry_ids
    found.discard(own_entry_id)
    return sorted(found)


def approval_step(second_approval_cents: int, amount_cents: int, first_approver: str, first_approved_cents: int,
                  reviewer: str) -> str:
    """Where an approval of amount_cents by reviewer takes a pending case. "final": credit it. "first": above the
    second-approval amount and nobody approved yet, so record it and wait. "repeat": the first approver again,
    same amount (a retry). "same_reviewer" or "other_amount": the second approval must come from another
    operator, for the amount the first approved."""
    if second_approval_cents <= 0 or amount_cents <= second_approval_cents:
        return "final"
    if not first_approver:
        return "first"
    if reviewer == first_approver:
        return "repeat" if amount_cents == first_approved_cents else "same_reviewer"
    if amount_cents != first_approved_cents:
        return "other_amount"
    return "final"
def allowance_exhausted(allowance: int, window_days: int) -> Triage:
    """What an undefendable charge's refund becomes once the contractor used up its automatic approvals."""
    return Triage("pending_review", False,
                  f"Waiting for an operator: {allowance} refunds of charges without a recording were approved "
                  f"automatically for this contractor in the last {window_days} days, the most allowed.")
