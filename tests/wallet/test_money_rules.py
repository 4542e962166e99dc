"""The wallet's rules of money in and its refusals, without a database or a payment provider: whether a
PaymentIntent may credit a top-up, how long a transient failure waits, a decline in words, and what a caller is
told when storage wrote nothing."""

from __future__ import annotations

import dataclasses

import pytest

from services.runtime.errors import AlreadyExists, FailedPrecondition, NotFound
from services.wallet import ledger, top_ups
from services.wallet.records import Payment

PAID = Payment(
    payment_intent_id="pi_1", status="succeeded", amount_cents=5000, received_cents=5000, currency="usd",
    metadata={"top_up_id": "tu-1", "contractor_id": "acme"}, customer_id="cus_1", card_brand="visa",
    card_last4="4242", failure_code="", failure_message="", client_secret="",
)


def verdict(payment: Payment = PAID, **changes) -> top_ups.Verdict:
    return top_ups.verdict("acme", 5000, "usd", "tu-1", dataclasses.replace(payment, **changes))


def test_a_succeeded_payment_matching_the_top_up_credits_it():
    assert verdict() == top_ups.Verdict("credit")


@pytest.mark.parametrize("changes", [
    {"metadata": {"top_up_id": "tu-2", "contractor_id": "acme"}},
    {"metadata": {"top_up_id": "tu-1", "contractor_id": "bob"}},
    {"metadata": {}},
    {"currency": "eur"},
    {"amount_cents": 4999},
    {"amount_cents": 5001},
])
def test_only_the_providers_own_figures_for_this_top_up_may_credit_it(changes):
    v = verdict(**changes)
    assert v.action == "refuse" and v.why


def test_a_succeeded_payment_with_nothing_received_yet_stays_pending():
    assert verdict(received_cents=0) == top_ups.Verdict("record", "pending",
                                                       "succeeded but the provider reports nothing received yet")


@pytest.mark.parametrize(("status", "failure_code", "state"), [
    ("canceled", "", "canceled"),
    ("requires_action", "", "requires_action"),
    ("requires_payment_method", "card_declined", "failed"),
    ("requires_payment_method", "", "pending"),  # not yet tried: no failure
    ("processing", "", "pending"),
    ("requires_confirmation", "", "pending"),
])
def test_an_unfinished_payment_records_its_state_and_credits_nothing(status, failure_code, state):
    v = verdict(status=status, failure_code=failure_code)
    assert (v.action, v.state) == ("record", state)


@pytest.mark.parametrize(("attempts", "wait_ms"), [(0, 1000), (1, 1000), (2, 2000), (3, 4000), (10, 512_000),
                                                   (11, top_ups.MAX_BACKOFF_MS), (60, top_ups.MAX_BACKOFF_MS)])
def test_a_transient_failure_waits_doubling_from_the_base_up_to_fifteen_minutes(attempts, wait_ms):
    assert top_ups.backoff_ms(attempts, 1000) == wait_ms


def test_a_decline_is_told_in_plain_words_and_an_unknown_code_is_quoted():
    assert top_ups.plain_decline("insufficient_funds") == "the card has insufficient funds"
    assert top_ups.plain_decline("weird_code") == "your bank declined the charge (weird_code)"
    assert top_ups.plain_decline("") == "your bank declined the charge"


OP = ledger.EntryOp(kind="refund", contractor_id="acme", amount_cents=700, idempotency_key="k-1", request_hash=b"",
                    reference="pay-1", refund_of_entry_id=12, reservation_id="res-1")


@pytest.mark.parametrize(("outcome", "kind", "reason", "quoted"), [
    ("key_reused", AlreadyExists, "IDEMPOTENCY_KEY_REUSED", "'k-1'"),
    ("reference_used", AlreadyExists, "PAYMENT_REFERENCE_USED", "'pay-1'"),
    ("no_wallet", NotFound, "NO_WALLET", "'acme'"),
    ("no_reservation", NotFound, "NO_RESERVATION", "res-1"),
    ("reservation_released", FailedPrecondition, "RESERVATION_RELEASED", "Charge instead"),
    ("reservation_captured", FailedPrecondition, "RESERVATION_ALREADY_CAPTURED", "at 450 cents (entry 99)"),
    ("no_charge", NotFound, "NO_CHARGE", "entry 12"),
    ("already_refunded", FailedPrecondition, "ALREADY_REFUNDED", "by entry 99"),
    ("exceeds_charge", FailedPrecondition, "REFUND_EXCEEDS_CHARGE", "700 cents exceeds charge 12 of 450"),
])
def test_each_outcome_storage_refuses_becomes_a_typed_error_naming_what_to_do(outcome, kind, reason, quoted):
    err = ledger.refusal(outcome, OP, 450, 99)
    assert (type(err), err.reason) == (kind, reason) and quoted in err.message


def test_an_outcome_with_no_words_of_its_own_is_still_refused():
    err = ledger.refusal("something_new", OP, None, None)
    assert isinstance(err, FailedPrecondition) and err.message == "refund was not applied: something_new"


@pytest.mark.parametrize(("outcome", "kind", "reason", "quoted"), [
    ("no_wallet", NotFound, "NO_WALLET", "the first top-up creates it"),
    ("paused", FailedPrecondition, "PAUSED", "balance 100 cents is below the pause threshold 4500 cents"),
    ("insufficient_available", FailedPrecondition, "INSUFFICIENT_AVAILABLE", "has 300 cents available"),
    ("call_reserved", AlreadyExists, "CALL_ALREADY_RESERVED", "'call-1'"),
])
def test_a_refused_reservation_says_why_with_its_figures(outcome, kind, reason, quoted):
    err = ledger.reserve_refusal(outcome, "acme", "call-1", 300, 100, 4500, 4500)
    assert (type(err), err.reason) == (kind, reason) and quoted in err.message
    assert ledger.reserve_refusal("other", "acme", "call-1", None, None, None, 1).message == (
        "reserve was not applied: other")
