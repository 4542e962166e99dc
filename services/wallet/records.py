"""The wallet's stored rows as typed records: what storage.py and payment_storage.py hand to the servicer, the
payment desk and the mappers; and the provider's PaymentIntent (`Payment`), which the top-up rules judge.

Each record names the columns the code reads; `from_row` picks them by name, so a migration that adds a column
changes nothing here until code needs it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any


class Outcome(enum.StrEnum):
    """What a stored function did with a movement or a hold; the values are the words the SQL returns."""

    APPLIED = "applied"
    REPLAYED = "replayed"
    # Refusals of a posting (wallet.post_entry, wallet.settle_call):
    KEY_REUSED = "key_reused"
    REFERENCE_USED = "reference_used"
    NO_WALLET = "no_wallet"
    NO_RESERVATION = "no_reservation"
    RESERVATION_RELEASED = "reservation_released"
    RESERVATION_CAPTURED = "reservation_captured"
    NO_CHARGE = "no_charge"
    ALREADY_REFUNDED = "already_refunded"
    EXCEEDS_CHARGE = "exceeds_charge"
    # Refusals of a hold (wallet.reserve), besides NO_WALLET:
    PAUSED = "paused"
    INSUFFICIENT_AVAILABLE = "insufficient_available"
    CALL_RESERVED = "call_reserved"


DONE = (Outcome.APPLIED, Outcome.REPLAYED)


def _get(row: Any, name: str) -> Any:
    """A column some queries do not select (None where it is absent)."""
    return row[name] if name in row.keys() else None


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry (wallet.entries): amount_cents is signed, balance_after_cents the running balance."""

    entry_id: int
    contractor_id: str
    kind: str  # 'top_up' | 'capture' | 'charge' | 'refund'
    amount_cents: int
    balance_after_cents: int
    idempotency_key: str
    reference: str
    description: str
    refund_of_entry_id: int | None
    reservation_id: uuid.UUID | None
    created_at: dt.datetime
    # 'card' | 'operator' | 'legacy' for a top-up; None where the query does not select it (the stored
    # functions' outcome rows: the only top-up they write is an operator's credit).
    credit_source: str | None

    @classmethod
    def from_row(cls, row: Any) -> Entry:
        return cls(
            row["entry_id"], row["contractor_id"], row["kind"], row["amount_cents"], row["balance_after_cents"],
            row["idempotency_key"], row["reference"], row["description"], row["refund_of_entry_id"],
            row["reservation_id"], row["created_at"], _get(row, "credit_source"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Posted:
    """What a stored function did with one movement: applied or replayed (with the entry, new or original; none
    for a free call's settlement), else the refusal's outcome and its figures."""

    outcome: Outcome  # APPLIED, REPLAYED, or why nothing was written
    entry: Entry | None
    detail_cents: int | None  # for a refusal: the figure it names (a captured amount, a charge's amount)
    entry_id: int | None  # for a refusal: the entry it names (the original of a reused key, ...)

    @property
    def done(self) -> bool:
        return self.outcome in DONE

    @classmethod
    def from_row(cls, row: Any) -> Posted:
        outcome = Outcome(row["outcome"])
        done = outcome in DONE and row["entry_id"] is not None
        return cls(outcome, Entry.from_row(row) if done else None, row["detail_cents"], row["entry_id"])


@dataclasses.dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on a contractor's money for one call (wallet.reservations), read at the database clock `now`: an
    open hold past expires_at holds nothing (ledger.reservation_state)."""

    reservation_id: uuid.UUID
    contractor_id: str
    call_id: str
    amount_cents: int
    state: str  # 'open' | 'captured' | 'released'
    expires_at: dt.datetime
    captured_cents: int | None
    capture_entry_id: int | None
    now: dt.datetime

    @classmethod
    def from_row(cls, row: Any, **given: Any) -> Reservation:
        """`given` supplies columns the query did not select (Reserve's answer names no contractor or call)."""
        return cls(**{f.name: given[f.name] if f.name in given else row[f.name]
                      for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class Reserved:
    """What wallet.reserve did: the hold (new, or this call's earlier one), else why not and the figures."""

    outcome: Outcome  # APPLIED, REPLAYED, NO_WALLET, PAUSED, INSUFFICIENT_AVAILABLE or CALL_RESERVED
    reservation: Reservation | None
    available_cents: int | None
    balance_cents: int | None
    pause_threshold_cents: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class AutoTopUp:
    """A wallet's auto top-up settings (wallet.auto_top_ups), all zero when never set."""

    enabled: bool
    threshold_cents: int
    amount_cents: int
    max_per_day_cents: int
    max_per_hour: int
    card_brand: str
    card_last4: str
    consented_at: dt.datetime | None
    consecutive_declines: int
    disabled_reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Wallet:
    """A contractor's wallet (wallet.wallets) with the money its open holds reserve and its auto top-up."""

    contractor_id: str
    balance_cents: int
    reserved_cents: int
    paused: bool
    pause_threshold_cents: int
    alert_threshold_cents: int
    alert_email: str
    alert_armed: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    contact_email: str  # where the dashboard writes to the contractor ('' when none was set)
    auto_top_up: AutoTopUp

    @classmethod
    def from_row(cls, row: Any) -> Wallet:
        auto = AutoTopUp(**{f.name: row[f"auto_{f.name}"] for f in dataclasses.fields(AutoTopUp)})
        columns = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name != "auto_top_up"}
        return cls(**columns, auto_top_up=auto)


@dataclasses.dataclass(frozen=True, slots=True)
class Routability:
    """One asked contractor's figures; found False (and zeros) when they have no wallet."""

    contractor_id: str  # as asked
    found: bool
    paused: bool
    available_cents: int
    balance_cents: int
    pause_threshold_cents: int

    @classmethod
    def from_row(cls, row: Any) -> Routability:
        return cls(row["asked_id"], row["contractor_id"] is not None, bool(row["paused"]),
                   row["available_cents"] or 0, row["balance_cents"] or 0, row["pause_threshold_cents"] or 0)


# ---------------------------------------------------------------------- money in (payment_storage.py)


@dataclasses.dataclass(frozen=True, slots=True)
class TopUp:
    """A card or auto top-up (wallet.top_ups): credited at most once, by the provider's word on its
    PaymentIntent."""

    top_up_id: uuid.UUID
    contractor_id: str
    origin: str  # 'card' | 'auto'
    amount_cents: int
    currency: str
    state: str  # 'requested' | 'pending' | 'requires_action' | 'credited' | 'failed' | 'canceled' | 'refused'
    payment_intent_id: str | None  # None until a PaymentIntent is recorded for it
    request_hash: bytes | None  # StartTopUp's request hash (card top-ups only), to tell a retry from a reused key
    entry_id: int | None
    credited_cents: int | None
    failure_code: str
    failure_reason: str
    card_brand: str
    card_last4: str
    attempts: int  # provider calls made for an auto top-up
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> TopUp:
        fields = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        if fields["request_hash"] is not None:
            fields["request_hash"] = bytes(fields["request_hash"])
        return cls(**fields)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedAutoTopUp:
    """An auto top-up leased for its provider call, with the wallet's auto top-up settings as they are now: a
    card removed or auto top-up turned off since it started means no charge."""

    top_up: TopUp
    auto_enabled: bool
    customer_id: str
    payment_method_id: str

    @classmethod
    def from_row(cls, row: Any) -> ClaimedAutoTopUp:
        return cls(TopUp.from_row(row), row["auto_enabled"], row["customer_id"], row["payment_method_id"])


@dataclasses.dataclass(frozen=True, slots=True)
class CardCredit:
    """What wallet.credit_payment did with a top-up's payment."""

    outcome: str  # 'credited' | 'already_credited' | 'unknown' | 'other_payment_intent'

    @classmethod
    def from_row(cls, row: Any) -> CardCredit:
        return cls(row["outcome"])


@dataclasses.dataclass(frozen=True, slots=True)
class StoredAutoTopUp:
    """A contractor's stored auto top-up settings (wallet.auto_top_ups) as saving a card and finishing a payment
    read them: the provider Customer its cards are saved on ('' until one is made), and the card saved. The
    settings shown are read with the wallet (AutoTopUp)."""

    customer_id: str
    payment_method_id: str = ""  # '' while no card is saved

    @classmethod
    def from_row(cls, row: Any) -> StoredAutoTopUp:
        return cls(row["customer_id"], row["payment_method_id"])


@dataclasses.dataclass(frozen=True, slots=True)
class CardSetup:
    """A card setup started for a contractor (wallet.card_setups): a SetupIntent on their provider Customer."""

    contractor_id: str
    customer_id: str

    @classmethod
    def from_row(cls, row: Any) -> CardSetup:
        return cls(row["contractor_id"], row["customer_id"])


@dataclasses.dataclass(frozen=True)
class Payment:
    """A PaymentIntent as the provider describes it, reduced to what the wallet verifies."""

    payment_intent_id: str
    status: str  # requires_payment_method, requires_confirmation, requires_action, processing, succeeded, canceled
    amount_cents: int
    received_cents: int
    currency: str
    metadata: dict[str, str]
    customer_id: str
    card_brand: str
    card_last4: str
    failure_code: str
    failure_message: str
    client_secret: str


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """What one reconcile check found wrong: the columns naming it, which differ from check to check."""

    facts: dict[str, Any]

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.facts.items())


@dataclasses.dataclass(frozen=True, slots=True)
class LedgerSummary:
    """What reconcile reports beside its checks."""

    wallets: int
    entries: int
    legacy_credits: int  # top-ups credited before payments were verified (credit_source 'legacy')
