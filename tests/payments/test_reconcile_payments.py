"""`callersync reconcile` fails loudly (exit 1, the PaymentIntent named) whenever a card was charged and the money
did not arrive exactly once: a succeeded PaymentIntent of a top-up left uncredited, one the wallet refused, a
PaymentIntent credited twice, a top-up marked credited without its credit."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.conftest import fresh_database
from tests.payments.conftest import API_KEY, start_top_up
from tests.payments.support import strangers_payment
from tests.system.processes import callersync_env, run_cli

NOT_CREDITED = "FAIL a PaymentIntent that succeeded and is not credited"
REFUSED_PAID = "FAIL a PaymentIntent that succeeded and was refused: the card was charged, nothing credited"


def reconcile(database_url: str, stripe_url: str = ""):  # type: ignore[no-untyped-def]
    env = callersync_env(CALLERSYNC_DATABASE_URL=database_url)
    if stripe_url:
        env.update(CALLERSYNC_STRIPE_API_KEY=API_KEY, CALLERSYNC_STRIPE_API_BASE=stripe_url)
    return run_cli("reconcile", env=env)


def failing_lines(result, payment_intent_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL") and payment_intent_id in line]


@pytest.fixture
async def ledger(servers):
    """A database of its own: these tests tamper with it."""
    url = await fresh_database(servers)
    conn = await asyncpg.connect(url)
    yield url, conn
    await conn.close()


async def test_a_payment_refused_for_another_contractor_that_succeeded_fails_reconcile(hooked, contractor):
    mine, stranger = await strangers_payment(hooked, contractor)
    row = await hooked.db.fetchrow("SELECT * FROM wallet.refused_payments WHERE payment_intent_id = $1", stranger.id)
    assert (row["status"], row["received_cents"], row["contractor_id"]) == ("succeeded", 5000, "someone-else")
    assert "paid by " + mine.top_up.payment_intent_id in row["reason"]

    for result in (reconcile(hooked.database_url, hooked.stripe.url), reconcile(hooked.database_url)):
        assert result.returncode == 1, result.stdout + result.stderr
        [line] = failing_lines(result, stranger.id)
        assert line.startswith(REFUSED_PAID) and "received_cents=5000" in line
        assert "To settle a refused PaymentIntent" in result.stdout
    await hooked.db.execute("UPDATE wallet.refused_payments SET settled_note = 'refunded at Stripe, ops-alice'"
                            " WHERE payment_intent_id = $1", stranger.id)
    assert failing_lines(reconcile(hooked.database_url, hooked.stripe.url), stranger.id) == []


async def test_a_refused_top_up_whose_payment_succeeded_fails_reconcile(hooked, contractor):
    """The amount of the contractor's own PaymentIntent changed after the wallet made it, and it was paid."""
    started = await start_top_up(hooked.wallet, contractor, 5000)
    pi = started.top_up.payment_intent_id
    hooked.stripe.client.v1.payment_intents.update(pi, params={"amount": 2_000_000})
    hooked.stripe.pay(pi)
    await asyncio.sleep(1.5)  # the webhook comes a second after the payment
    reply = await hooked.wallet.ApplyPaymentEvent(pb.ApplyPaymentEventRequest(object_id=pi))
    assert reply.outcome == pb.PAYMENT_EVENT_OUTCOME_REFUSED
    result = reconcile(hooked.database_url, hooked.stripe.url)
    assert result.returncode == 1
    [line] = failing_lines(result, pi)
    assert line.startswith(REFUSED_PAID) and "2000000 cents" in line
    assert "review:" not in result.stdout


async def test_a_succeeded_payment_intent_left_uncredited_fails_reconcile(ledger, quiet_stripe):
    url, conn = ledger
    top_up_id = str(uuid.uuid4())
    pi = quiet_stripe.client.v1.payment_intents.create(params={
        "amount": 5000, "currency": "usd", "payment_method_types": ["card"],
        "metadata": {"contractor_id": "victim", "top_up_id": top_up_id}})
    assert quiet_stripe.pay(pi.id)["status"] == "succeeded"
    await conn.execute("INSERT INTO wallet.top_ups (top_up_id, contractor_id, origin, amount_cents, state,"
                       " payment_intent_id) VALUES ($1::uuid, 'victim', 'card', 5000, 'pending', $2)", top_up_id, pi.id)
    result = reconcile(url, quiet_stripe.url)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = failing_lines(result, pi.id)
    assert line.startswith(NOT_CREDITED) and "contractor_id=victim" in line and "received_cents=5000" in line
    assert "reconcile: FAILED" in result.stdout


async def _card_credit(conn, key: str, reference: str, cents: int, balance_after: int) -> int:
    return await conn.fetchval(
        "INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,"
        " request_hash, reference, description, credit_source)"
        " VALUES ('victim', 'top_up', $1, $2, $3, '\\x00', $4, 'Card top-up', 'card') RETURNING entry_id",
        cents, balance_after, key, reference)


async def test_a_payment_intent_credited_twice_fails_reconcile(ledger):
    url, conn = ledger
    # Only a database without the unique reference index can hold this: what reconcile is the second line for.
    await conn.execute("DROP INDEX wallet.entries_payment_reference")
    await conn.execute("INSERT INTO wallet.wallets (contractor_id, balance_cents) VALUES ('victim', 10000)")
    await _card_credit(conn, "payment:pi_twice", "pi_twice", 5000, 5000)
    await _card_credit(conn, "payment:pi_twice:again", "pi_twice", 5000, 10000)
    result = reconcile(url)
    assert result.returncode == 1
    assert "FAIL a PaymentIntent credited more than once: payment_intent_id=pi_twice, credits=2" in result.stdout


async def test_a_top_up_marked_credited_without_its_credit_fails_reconcile(ledger):
    url, conn = ledger
    await conn.execute("INSERT INTO wallet.wallets (contractor_id, balance_cents) VALUES ('victim', 5000)")
    # The ledger credit is an operator's; the card top-up claims it as its own, so its PaymentIntent has none.
    entry_id = await conn.fetchval(
        "SELECT entry_id FROM wallet.post_entry('victim', 'top_up', 5000, 'wire-1', '\\x01', 'wire-1',"
        " 'bank transfer, ticket OPS-1', NULL, NULL)")
    await conn.execute("INSERT INTO wallet.top_ups (top_up_id, contractor_id, origin, amount_cents, state,"
                       " payment_intent_id, entry_id, credited_cents) VALUES ($1, 'victim', 'card', 5000, 'credited',"
                       " 'pi_never_credited', $2, 5000)", uuid.uuid4(), entry_id)
    result = reconcile(url)
    assert result.returncode == 1
    [line] = failing_lines(result, "pi_never_credited")
    assert line.startswith("FAIL a top-up recorded as credited without its credit: ")
