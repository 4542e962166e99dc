"""The wallet's rules as plain functions: what a valid request is, and what each storage outcome means."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re

from services.runtime.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.runtime.validation import require_id, require_text
from services.wallet.records import Outcome

# Policy: "You prepay any amount — $25 minimum top-up."
MIN_TOP_UP_CENTS = 2500
# No single movement above $1bn: keeps every sum far inside int64 whatever a client sends.
MAX_AMOUNT_CENTS = 100_000_000_000
MAX_KEY_LEN = 200
MAX_TEXT_LEN = 500
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_RESERVATION_TTL_S = 86_400
MAX_ROUTABILITY_BATCH = 1000

# Deliberately plain: one @, a dot in the domain, no spaces. The SMTP server is the real judge.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$")


@dataclasses.dataclass(frozen=True)
class EntryOp:
    """One balance change for storage to append. amount_cents is always positive; kind gives the sign."""

    kind: str  # top_up, charge, capture, refund
    contractor_id: str
    amount_cents: int
    idempotency_key: str
    request_hash: bytes
    reference: str = ""
    description: str = ""
    refund_of_entry_id: int | None = None
    reservation_id: str | None = None


@dataclasses.dataclass(frozen=True)
class SettleOp:
    """One finished call for storage to settle. The hashes are those Charge and Capture would store, so their
    keys replay across the single and the batch RPCs. reservation_id is the payer's hold on the call, if any."""

    call_id: str
    payer_contractor_id: str
    amount_cents: int
    idempotency_key: str
    charge_hash: bytes | None
    reference: str
    description: str
    reservation_id: str | None
    capture_hash: bytes | None


MAX_SETTLE_BATCH = 1000


def validate_settlement(index: int, call_id: str, payer: str, amount_cents: int, key: str, reference: str,
                        description: str) -> None:
    """A whole SettleCalls request is refused when one item is malformed: that is a client bug, not a call."""
    at = f"items[{index}]."
    require_id(at + "call_id", call_id)
    require_text(at + "reference", reference, MAX_TEXT_LEN)
    require_text(at + "description", description, MAX_TEXT_LEN)
    if not payer:
        if amount_cents or key:
            raise InvalidArgument(
                f"{at}amount_cents and {at}idempotency_key must be empty when nobody pays (no payer_contractor_id)",
                field=at + "payer_contractor_id",
            )
        return
    require_id(at + "payer_contractor_id", payer)
    require_amount(at + "amount_cents", amount_cents)
    require_id(at + "idempotency_key", key, MAX_KEY_LEN)


def require_amount(name: str, cents: int, *, minimum: int = 1, maximum: int = MAX_AMOUNT_CENTS) -> None:
    if cents < minimum:
        what = "positive" if minimum == 1 else f"at least {minimum} cents"
        raise InvalidArgument(f"{name} must be {what}; got {cents}", reason="AMOUNT_OUT_OF_RANGE", field=name)
    if cents > maximum:
        raise InvalidArgument(
            f"{name} must be at most {maximum} cents; got {cents}", reason="AMOUNT_OUT_OF_RANGE", field=name
        )


def validate_email(email: str) -> None:
    if not _EMAIL.match(email):
        raise InvalidArgument(f"{email!r} is not an email address like name@example.com", field="email")


def validate_alert(contractor_id: str, threshold_cents: int, email: str) -> None:
    require_id("contractor_id", contractor_id)
    if threshold_cents == 0:
        return
    require_amount("threshold_cents", threshold_cents)
    validate_email(email)


def reservation_ttl_s(expires_in_s: int, default_s: int) -> int:
    if expires_in_s == 0:
        return default_s
    if not 1 <= expires_in_s <= MAX_RESERVATION_TTL_S:
        raise InvalidArgument(
            f"expires_in_s must be between 1 and {MAX_RESERVATION_TTL_S} (0 for the default {default_s})",
            field="expires_in_s",
        )
    return expires_in_s


def reservation_state(state: str, expires_at: dt.datetime, now: dt.datetime) -> str:
    """An open reservation past its expiry holds nothing: it reads as expired without anyone sweeping it."""
    if state == "open" and expires_at <= now:
        return "expired"
    return state


class Routable(enum.StrEnum):
    """Whether a contractor can take a call, else the first reason they cannot."""

    ROUTABLE = "routable"
    NO_WALLET = "no_wallet"
    PAUSED = "paused"
    INSUFFICIENT_AVAILABLE = "insufficient_available"


def routability(found: bool, paused: bool, available_cents: int, amount_cents: int) -> Routable:
    """Why a contractor can or cannot take a call costing amount_cents right now."""
    if not found:
        return Routable.NO_WALLET
    if paused:
        return Routable.PAUSED
    if available_cents < amount_cents:
        return Routable.INSUFFICIENT_AVAILABLE
    return Routable.ROUTABLE


def refusal(outcome: Outcome, op: EntryOp, detail_cents: int | None, entry_id: int | None) -> DomainError:
    """What a caller is told when storage wrote nothing for op."""
    who = op.contractor_id
    if outcome == Outcome.KEY_REUSED:
        return AlreadyExists(
            f"idempotency key {op.idempotency_key!r} was already used for a different request (entry "
            f"{entry_id}); send a new key for a new request, or the original parameters to get the original answer",
            reason="IDEMPOTENCY_KEY_REUSED",
        )
    if outcome == Outcome.REFERENCE_USED:
        return AlreadyExists(
            f"payment reference {op.reference!r} was already credited (entry {entry_id}); a payment is credited "
            "once: retry with the original idempotency key to get the original answer",
            reason="PAYMENT_REFERENCE_USED",
        )
    if outcome == Outcome.NO_WALLET:
        return no_wallet(who)
    if outcome == Outcome.NO_RESERVATION:
        return NotFound(f"no reservation {op.reservation_id}", reason="NO_RESERVATION")
    if outcome == Outcome.RESERVATION_RELEASED:
        return FailedPrecondition(
            f"reservation {op.reservation_id} was released, so there is nothing to capture; "
            "settle the call with Charge instead",
            reason="RESERVATION_RELEASED",
        )
    if outcome == Outcome.RESERVATION_CAPTURED:
        return FailedPrecondition(
            f"reservation {op.reservation_id} was already captured at {detail_cents} cents (entry {entry_id}); "
            "a reservation settles once",
            reason="RESERVATION_ALREADY_CAPTURED",
        )
    if outcome == Outcome.NO_CHARGE:
        return NotFound(
            f"entry {op.refund_of_entry_id} is not a charge or capture of a wallet; only debits can be refunded",
            reason="NO_CHARGE",
        )
    if outcome == Outcome.ALREADY_REFUNDED:
        return FailedPrecondition(
            f"charge {op.refund_of_entry_id} was already refunded by entry {entry_id}; a charge is refunded once",
            reason="ALREADY_REFUNDED",
        )
    if outcome == Outcome.EXCEEDS_CHARGE:
        return FailedPrecondition(
            f"a refund of {op.amount_cents} cents exceeds charge {op.refund_of_entry_id} of {detail_cents} cents",
            reason="REFUND_EXCEEDS_CHARGE",
        )
    return FailedPrecondition(f"{op.kind} was not applied: {outcome}")


def no_wallet(contractor_id: str) -> NotFound:
    """A call that needs an existing wallet, for a contractor who has none."""
    return NotFound(f"contractor {contractor_id!r} has no wallet; the first top-up creates it", reason="NO_WALLET")


def reserve_refusal(outcome: Outcome, contractor_id: str, call_id: str, available_cents: int | None,
                    balance_cents: int | None, threshold_cents: int | None, amount_cents: int) -> DomainError:
    if outcome == Outcome.NO_WALLET:
        return no_wallet(contractor_id)
    if outcome == Outcome.PAUSED:
        return FailedPrecondition(
            f"contractor {contractor_id!r} is paused: balance {balance_cents} cents is below the pause threshold "
            f"{threshold_cents} cents; a top-up resumes calls",
            reason="PAUSED",
        )
    if outcome == Outcome.INSUFFICIENT_AVAILABLE:
        return FailedPrecondition(
            f"contractor {contractor_id!r} has {available_cents} cents available after open reservations, "
            f"less than the {amount_cents} cents this call needs",
            reason="INSUFFICIENT_AVAILABLE",
        )
    if outcome == Outcome.CALL_RESERVED:
        return AlreadyExists(
            f"call {call_id!r} already holds a reservation of a different amount on {contractor_id!r}; "
            "a call reserves once per contractor",
            reason="CALL_ALREADY_RESERVED",
        )
    return FailedPrecondition(f"reserve was not applied: {outcome}")
