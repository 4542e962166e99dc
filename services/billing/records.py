"""Billing's stored rows as typed records: what storage.py hands to the rule and use-case modules.

Each record names the columns domain code reads; `from_row` picks them by name, so a migration that adds a
column changes nothing here until code needs it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Self


class FromRow:
    """A record read by its fields' names: from_row(row) picks each field's column."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Any) -> Self:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class ZipRate(FromRow):
    """A version of a ZIP's rate: in effect from effective_from until the next version's (None: still)."""

    zip: str
    rate_cents: int
    effective_from: dt.datetime
    effective_until: dt.datetime | None
    set_by: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class BookingFee(FromRow):
    """A version of the booking fee, like ZipRate."""

    fee_cents: int
    effective_from: dt.datetime
    effective_until: dt.datetime | None
    set_by: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RatedCall(FromRow):
    """A stored rating decision (billing.rated_calls): 'settling' until the wallet moved its money."""

    call_id: str
    facts_hash: bytes  # sha256 of `facts`: tells a re-send from a call sent again with other facts
    facts: bytes  # the FinishedCall as received, serialized deterministically
    zip: str
    caller_number: str
    started_at: dt.datetime
    billable: bool
    rule: str
    payer_contractor_id: str
    price_cents: int
    decision: bytes  # the RatingDecision message
    capture_reservation_id: str
    state: str  # 'settling' | 'settled'
    wallet_entry_id: int | None
    decided_at: dt.datetime

    @classmethod
    def decided(cls, row: dict[str, Any], decided_at: dt.datetime) -> RatedCall:
        """A decision as just stored: the row inserted, with the database's decision time."""
        return cls(row["call_id"], row["facts_hash"], row["facts"], row["zip"], row["caller_number"],
                   row["started_at"], row["billable"], row["rule"], row["payer_contractor_id"], row["price_cents"],
                   row["decision"], row["capture_reservation_id"], row["state"], None, decided_at)

    def settled(self, wallet_entry_id: int | None, capture_reservation_id: str) -> RatedCall:
        """This decision as finish_calls leaves it (built directly: dataclasses.replace cost 4 % of billing's CPU
        per rated call)."""
        return RatedCall(self.call_id, self.facts_hash, self.facts, self.zip, self.caller_number, self.started_at,
                         self.billable, self.rule, self.payer_contractor_id, self.price_cents, self.decision,
                         capture_reservation_id, "settled", wallet_entry_id, self.decided_at)


@dataclasses.dataclass(frozen=True, slots=True)
class Booking(FromRow):
    """A booking fee (billing.bookings): 'settling' until the wallet charged it."""

    booking_id: str
    facts_hash: bytes
    call_id: str
    contractor_id: str
    scheduled_at: dt.datetime
    appointment_at: dt.datetime | None
    fee_cents: int
    fee_effective_from: dt.datetime
    charge_id: str
    state: str  # 'settling' | 'settled'
    wallet_entry_id: int | None
    recorded_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Charge(FromRow):
    """A settled debit of a wallet (billing.charges): a billable call or a booking, with its evidence."""

    charge_id: str
    contractor_id: str
    kind: str  # 'call' | 'booking'
    call_id: str
    booking_id: str
    zip: str
    amount_cents: int
    wallet_entry_id: int
    recording_uri: str
    disclosure_played: bool
    transcript_uri: str
    refunded_cents: int
    charged_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RefundCase(FromRow):
    """A refund request and its verdict (billing.refund_cases); an approval is 'settling' until credited."""

    refund_case_id: str
    idempotency_key: str
    request_hash: bytes  # facts_hash of the request: tells a retry from a different request under the same key
    charge_id: str
    contractor_id: str
    reason: str  # a RefundReason name
    note: str
    state: str  # 'pending_review' | 'approved' | 'denied' | 'rejected_*'
    amount_cents: int
    recording_uri: str
    disclosure_played: bool
    transcript_uri: str
    duplicate_of_charge_id: str
    resolution_note: str
    reviewer: str
    auto_resolved: bool
    credit_state: str  # 'none' | 'settling' | 'settled'
    refund_entry_id: int | None
    requested_at: dt.datetime
    resolved_at: dt.datetime | None
    # What the contractor asked, once an approval in part lowered amount_cents (None: the whole of it).
    requested_cents: int | None
    # The first of two approvals, above the second-approval amount ('' and None until there is one).
    first_approver: str
    first_approved_at: dt.datetime | None
    first_approved_cents: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Unsettled:
    """The keys of settlements left unfinished (a crash, a wallet outage), for the sweeper."""

    calls: list[str]
    bookings: list[str]
    refunds: list[str]


@dataclasses.dataclass(frozen=True, slots=True)
class CallDay(FromRow):
    """One UTC day of a contractor's calls: those they paid for (and how much), and those that were free."""

    day: dt.date
    billable_calls: int
    billable_cents: int
    free_calls: int
