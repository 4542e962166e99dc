"""Billing's stored rows as typed records: what storage.py hands to the rule and use-case modules.

Each record names the columns domain code reads; `from_row` picks them by name, so a migration that adds a
column changes nothing here until code needs it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, TypeVar

T = TypeVar("T")


def _from_row(cls: type[T], row: Any) -> T:
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class RatedCall:
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
    def from_row(cls, row: Any) -> RatedCall:
        return _from_row(cls, row)


@dataclasses.dataclass(frozen=True, slots=True)
class Booking:
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

    @classmethod
    def from_row(cls, row: Any) -> Booking:
        return _from_row(cls, row)


@dataclasses.dataclass(frozen=True, slots=True)
class Unsettled:
    """The keys of settlements left unfinished (a crash, a wallet outage), for the sweeper."""

    calls: list[str]
    bookings: list[str]
    refunds: list[str]
