"""`callersync demo` with a payment provider (localstripe, as `callersync up` starts it): the owner of the paused
wallet tops up by card, a contractor's auto top-up saves them from a pause, and the ledger reconciles, the
provider's PaymentIntents included."""

import urllib.parse

import redis.asyncio as redis

from tests.conftest import fresh_database
from tests.payments.conftest import API_KEY
from tests.system.processes import run_cli
from tests.system.stack import start_stack, use_mtls


async def test_the_demo_pays_by_card_and_auto_tops_up(servers, quiet_stripe):
    url = await fresh_database(servers)
    redis_url = urllib.parse.urlsplit(servers.redis_url)._replace(path="/7").geturl()
    client = redis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    provider = {"CALLERSYNC_STRIPE_API_KEY": API_KEY, "CALLERSYNC_STRIPE_API_BASE": quiet_stripe.url}
    stack = start_stack(url, redis_url, mtls=use_mtls(False), CALLERSYNC_PAYMENT_SWEEP_INTERVAL_MS="100",
                        CALLERSYNC_PAYMENT_SWEEP_AFTER_MS="200", **provider)
    try:
        result = run_cli("demo", "--seed", "7", env=stack.env, timeout=180)
    finally:
        stack.stop()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"payments: by card through {quiet_stripe.url}" in out
    assert "paid by card (visa ending 4242)" in out
    assert "auto top-up charged the saved card" in out and "paused: no, never" in out
    assert "reconcile: ok" in out and "PaymentIntents not asked" not in out
