"""A PaymentIntent in another currency credits nothing and says why in the refusals log; a provider that cannot be
reached is asked again later, less and less often (top_ups.backoff_ms), without a charge or an email."""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg

from bench.common import free_port
from callersync.wallet.v1 import wallet_pb2 as pb
from services.wallet import top_ups
from services.wallet.payment_storage import PaymentStore
from services.wallet.payments import PaymentDesk
from services.wallet.provider import PaymentProvider
from tests.conftest import fresh_database
from tests.payments.conftest import credits, start_top_up


async def test_a_payment_intent_in_another_currency_is_refused_and_logged(hooked, contractor, caplog):
    started = await start_top_up(hooked.wallet, contractor, 5000)
    pi = started.top_up.payment_intent_id
    hooked.stripe.client.v1.payment_intents.update(pi, params={"currency": "eur"})
    assert hooked.stripe.pay(pi)["status"] == "succeeded"
    with caplog.at_level(logging.WARNING, logger="callersync.wallet.payments.refused"):
        reply = await hooked.wallet.ApplyPaymentEvent(pb.ApplyPaymentEventRequest(object_id=pi))
    assert reply.outcome == pb.PAYMENT_EVENT_OUTCOME_REFUSED
    [logged] = [r for r in caplog.records if r.name == "callersync.wallet.payments.refused" and pi in r.getMessage()]
    assert "in 'eur', not 'usd'" in logged.getMessage() and "nothing credited" in logged.getMessage()
    got = await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=contractor, top_up_id=started.top_up.top_up_id))
    assert got.top_up.state == pb.TOP_UP_STATE_REFUSED and "'eur'" in got.top_up.failure_reason
    assert await credits(hooked.db, contractor) == []
    kept = await hooked.db.fetchrow("SELECT status, currency FROM wallet.refused_payments WHERE payment_intent_id = $1",
                                    pi)
    assert (kept["status"], kept["currency"]) == ("succeeded", "eur")


def test_backoff_doubles_from_the_base_and_stops_at_fifteen_minutes():
    assert [top_ups.backoff_ms(n, 2000) for n in (0, 1, 2, 3, 4)] == [2000, 2000, 4000, 8000, 16_000]
    assert top_ups.backoff_ms(10, 2000) == 900_000  # 2000 * 2**9 = 1,024,000: capped
    assert top_ups.backoff_ms(60, 2000) == top_ups.MAX_BACKOFF_MS == 15 * 60 * 1000


@contextlib.asynccontextmanager
async def desk_without_provider(servers) -> AsyncIterator[tuple[PaymentDesk, asyncpg.Pool]]:
    """A payment desk on a database of its own whose provider is down: nothing listens at its address, so every
    call is a connection error, what an outage of Stripe looks like from here."""
    pool = await asyncpg.create_pool(await fresh_database(servers), min_size=1, max_size=2)
    provider = PaymentProvider("sk_test_x", f"http://127.0.0.1:{free_port()}", "pk_test_x")
    try:
        yield PaymentDesk(PaymentStore(pool), provider, dashboard_url="http://dash", sweep_interval_ms=60_000,
                          sweep_after_ms=60_000, retry_base_ms=4000), pool
    finally:
        await provider.close()
        await pool.close()


async def test_an_unreachable_provider_is_retried_with_backoff_and_charges_nothing(servers, contractor):
    async with desk_without_provider(servers) as (desk, pool):
        await pool.execute("INSERT INTO wallet.wallets (contractor_id) VALUES ($1)", contractor)
        await pool.execute(
            "INSERT INTO wallet.auto_top_ups (contractor_id, enabled, threshold_cents, amount_cents, max_per_day_cents,"
            " email, customer_id, payment_method_id, consented_at) VALUES ($1, true, 1000, 2500, 5000,"
            " 'x@example.com', 'cus_x', 'pm_x', now())", contractor)
        top_up_id = uuid.uuid4()
        await pool.execute("INSERT INTO wallet.top_ups (top_up_id, contractor_id, origin, amount_cents, state, email)"
                           " VALUES ($1, $2, 'auto', 2500, 'requested', 'x@example.com')", top_up_id, contractor)

        async def waits_ms() -> float:
            row = await pool.fetchrow("SELECT next_attempt_at - now() AS wait, state, failure_code"
                                      " FROM wallet.top_ups WHERE top_up_id = $1", top_up_id)
            assert row["state"] == "requested" and row["failure_code"]
            return row["wait"] / datetime.timedelta(milliseconds=1)

        for attempt, expected_ms in ((1, 4000), (2, 8000), (3, 16_000)):
            assert await desk.charge_once() == 1
            assert expected_ms - 1000 < await waits_ms() <= expected_ms, attempt
            assert await desk.charge_once() == 0  # not asked again before its time
            await pool.execute("UPDATE wallet.top_ups SET next_attempt_at = now() WHERE top_up_id = $1", top_up_id)
        assert await pool.fetchval("SELECT count(*) FROM wallet.outbox WHERE topic = 'wallet.payment_email'") == 0
        assert await pool.fetchval("SELECT count(*) FROM wallet.entries") == 0


async def test_a_top_up_awaiting_authentication_reads_without_the_provider(servers, contractor):
    """GetTopUp asks the provider only for the means to finish a payment: with the provider unreachable the
    contractor still reads the top-up, without the button, instead of UNAVAILABLE."""
    async with desk_without_provider(servers) as (desk, pool):
        await pool.execute("INSERT INTO wallet.wallets (contractor_id) VALUES ($1)", contractor)
        top_up_id = uuid.uuid4()
        await pool.execute("INSERT INTO wallet.top_ups (top_up_id, contractor_id, origin, amount_cents, state,"
                           " payment_intent_id, email) VALUES ($1, $2, 'card', 9000, 'requires_action', 'pi_held',"
                           " 'x@example.com')", top_up_id, contractor)
        top_up = await desk.top_up(str(top_up_id))
        assert top_up is not None and top_up.state == "requires_action"
        assert await desk.to_finish(top_up) == ("", "")
