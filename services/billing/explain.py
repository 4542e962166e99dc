"""ExplainCall's story: the stored decision, its charge, bookings and refunds, in one paragraph to read out."""

from __future__ import annotations

from collections.abc import Sequence

from callersync.billing.v1 import billing_pb2 as pb
from services.billing.records import Booking, Charge, RatedCall, RefundCase
from services.runtime.money import dollars

_CASE_WORDS = {
    "pending_review": "is waiting for an operator",
    "approved": "was approved",
    "denied": "was denied",
    "rejected_ineligible": "was rejected as not refundable",
    "rejected_not_duplicate": "was rejected: no double bill in the ledger",
    "rejected_out_of_window": "was rejected: asked after the refund window",
}


def story(call_id: str, rated: RatedCall | None, charges: Sequence[Charge],
          cases: Sequence[RefundCase], bookings: Sequence[Booking]) -> str:
    parts = []
    if rated is None:
        parts.append(f"Call {call_id} was not rated (no finished call reported); only bookings arrived.")
    else:
        decision = pb.RatingDecision.FromString(rated.decision)
        parts.append(decision.explanation)
        if rated.state == "settling":
            parts.append("The wallet settlement is still in progress and is retried automatically.")
    for charge in charges:
        what = "the call" if charge.kind == "call" else f"booking {charge.booking_id}"
        parts.append(f"Charge {charge.charge_id}: {dollars(charge.amount_cents)} to {charge.contractor_id} "
                     f"for {what} (wallet entry {charge.wallet_entry_id}).")
    for booking in bookings:
        if booking.state == "settling":
            parts.append(f"Booking {booking.booking_id}: fee {dollars(booking.fee_cents)} is being charged.")
    for case in cases:
        words = _CASE_WORDS[case.state]
        refund = f", {dollars(case.amount_cents)} credited back" if case.refund_entry_id else ""
        parts.append(f"Refund case {case.refund_case_id} on charge {case.charge_id} ({case.reason}) "
                     f"{words}{refund}. {case.resolution_note}".rstrip())
    return " ".join(parts)


def concerns(contractor_id: str, facts: pb.FinishedCall | None, charges: Sequence[Charge],
             bookings: Sequence[Booking]) -> bool:
    """Whether a call is this contractor's business: one of its legs rang them, or it charged or booked them."""
    return (
        (facts is not None and any(leg.contractor_id == contractor_id for leg in facts.legs))
        or any(c.contractor_id == contractor_id for c in charges)
        or any(b.contractor_id == contractor_id for b in bookings)
    )
