"""The rules of money in as plain functions: what a valid card or auto top-up request is, whether a PaymentIntent
the provider describes may credit a top-up, and what a contractor is told when a charge fails."""

from __future__ import annotations

import dataclasses

from services.runtime.errors import InvalidArgument
from services.runtime.money import dollars
from services.runtime.validation import require_id, require_text
from services.wallet import ledger
from services.wallet.records import Payment

CURRENCY = "usd"
# A card payment's reference is its PaymentIntent id: only the wallet credits those, after asking the provider.
CARD_REFERENCE_PREFIX = "pi_"
CARD_KEY_PREFIX = "payment:"
# Three declines in a row turn auto top-up off (policy: "three in a row turn it off").
MAX_CONSECUTIVE_DECLINES = 3
MAX_BACKOFF_MS = 15 * 60 * 1000


def validate_amount(cents: int, max_cents: int, field: str = "amount_cents") -> None:
    if cents < ledger.MIN_TOP_UP_CENTS:
        raise InvalidArgument(
            f"a top-up must be at least {ledger.MIN_TOP_UP_CENTS} cents ($25.00); got {cents}",
            reason="TOP_UP_BELOW_MINIMUM", field=field,
        )
    ceiling = max_cents or ledger.MAX_AMOUNT_CENTS
    if cents > ceiling:
        raise InvalidArgument(
            f"a top-up may be at most {ceiling} cents ({dollars(ceiling)}), the operator's limit; got {cents}. "
            "Split a larger payment into several top-ups.",
            reason="TOP_UP_ABOVE_MAXIMUM", field=field,
        )


def validate_manual_credit(contractor_id: str, amount_cents: int, reference: str, key: str, reason: str,
                           max_cents: int) -> None:
    require_id("contractor_id", contractor_id)
    validate_amount(amount_cents, max_cents)
    require_id("payment_reference", reference, ledger.MAX_KEY_LEN)
    if reference.startswith(CARD_REFERENCE_PREFIX):
        raise InvalidArgument(
            f"payment_reference {reference!r} looks like a card PaymentIntent: card payments are credited by the "
            "wallet once the provider confirms them (StartTopUp, or the sweeper), never by hand",
            reason="CARD_PAYMENT_REFERENCE", field="payment_reference",
        )
    require_id("idempotency_key", key, ledger.MAX_KEY_LEN)
    if key.startswith(CARD_KEY_PREFIX):
        raise InvalidArgument(f"idempotency keys starting {CARD_KEY_PREFIX!r} are the wallet's own",
                              field="idempotency_key")
    if not reason.strip():
        raise InvalidArgument(
            "reason is required: a manual credit says in writing why the operator credits this wallet "
            "(it is shown in the ledger)", reason="REASON_REQUIRED", field="reason",
        )
    require_text("reason", reason, ledger.MAX_TEXT_LEN)


def validate_start(contractor_id: str, amount_cents: int, key: str, email: str, max_cents: int) -> None:
    require_id("contractor_id", contractor_id)
    validate_amount(amount_cents, max_cents)
    require_id("idempotency_key", key, ledger.MAX_KEY_LEN)
    if email:
        ledger.validate_email(email)


@dataclasses.dataclass(frozen=True)
class AutoTopUpSettings:
    enabled: bool
    threshold_cents: int
    amount_cents: int
    max_per_day_cents: int
    email: str


def validate_auto_top_up(contractor_id: str, s: AutoTopUpSettings, max_cents: int) -> None:
    require_id("contractor_id", contractor_id)
    if not s.enabled:
        return
    ledger.require_amount("threshold_cents", s.threshold_cents)
    validate_amount(s.amount_cents, max_cents)
    if s.max_per_day_cents < s.amount_cents:
        raise InvalidArgument(
            f"max_per_day_cents ({s.max_per_day_cents}) must be at least amount_cents ({s.amount_cents}): "
            "otherwise no auto top-up could ever run", field="max_per_day_cents",
        )
    ledger.require_amount("max_per_day_cents", s.max_per_day_cents)
    if not s.email:
        raise InvalidArgument("email is required: declines and receipts of auto top-ups are emailed", field="email")
    ledger.validate_email(s.email)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a PaymentIntent means for the top-up it names. action: credit, record (a state to store), refuse."""

    action: str
    state: str = ""
    why: str = ""


def verdict(contractor_id: str, amount_cents: int, currency: str, top_up_id: str, payment: Payment) -> Verdict:
    """Whether this provider-described payment may credit this top-up. Only the provider's own figures count."""
    meta = payment.metadata
    if meta.get("top_up_id") != top_up_id:
        return Verdict("refuse", why=f"PaymentIntent names top-up {meta.get('top_up_id')!r}, not {top_up_id}")
    if meta.get("contractor_id") != contractor_id:
        return Verdict("refuse", why=f"PaymentIntent is for contractor {meta.get('contractor_id')!r}, "
                                     f"not {contractor_id!r}")
    if payment.currency != currency:
        return Verdict("refuse", why=f"PaymentIntent is in {payment.currency!r}, not {currency!r}")
    if payment.amount_cents != amount_cents:
        return Verdict("refuse", why=f"PaymentIntent is for {payment.amount_cents} cents, the top-up for "
                                     f"{amount_cents}: changed after we created it")
    if payment.status == "succeeded":
        if payment.received_cents <= 0:
            return Verdict("record", "pending", "succeeded but the provider reports nothing received yet")
        return Verdict("credit")
    if payment.status == "canceled":
        return Verdict("record", "canceled")
    if payment.status == "requires_action":
        return Verdict("record", "requires_action")
    if payment.status == "requires_payment_method" and payment.failure_code:
        return Verdict("record", "failed")
    return Verdict("record", "pending")


_DECLINES = {
    "insufficient_funds": "the card has insufficient funds",
    "card_declined": "your bank declined the charge",
    "generic_decline": "your bank declined the charge",
    "expired_card": "the card has expired",
    "incorrect_cvc": "the card's security code was wrong",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "do_not_honor": "your bank declined the charge without giving a reason",
    "processing_error": "the card could not be processed",
    "authentication_required": "your bank wants you to confirm this payment yourself (3-D Secure)",
    "payment_intent_authentication_failure": "the payment was not authenticated",
}


def plain_decline(code: str) -> str:
    """A provider's decline code in words a contractor understands."""
    return _DECLINES.get(code, "your bank declined the charge" + (f" ({code})" if code else ""))


def backoff_ms(attempts: int, base_ms: int) -> int:
    """The wait before retrying a transient provider failure: doubling from base, at most 15 minutes."""
    return int(min(MAX_BACKOFF_MS, base_ms * (2 ** max(0, attempts - 1))))
