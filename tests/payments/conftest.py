"""Payments against a real localstripe process: one that delivers signed webhooks to a real gateway in front of a
wallet whose sweeper is asleep (the webhook path alone), and one that sends none to a wallet on its own database
whose sweeper asks often (the sweeper path alone)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
import stripe

from bench.common import free_port
from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.gateway.app import Gateway
from services.gateway.config import GatewayConfig
from services.runtime.config import Settings
from services.wallet.app import WALLET
from services.wallet.config import WalletConfig
from tests.conftest import Servers, fresh_database, serving
from tests.gateway.conftest import OLD_KEY, SIGNING_KEY, bearer, token

WEBHOOK_SECRET = "whsec_callersync_test"
API_KEY = "sk_test_callersync"
PUBLISHABLE_KEY = "pk_test_callersync"
CARDS = {
    "visa": "4242424242424242",
    "declined_at_setup": "4000000000000002",  # localstripe declines attaching it (a SetupIntent fails)
    "declined_when_charged": "4000000000000341",  # attaches, then every charge is declined
    "3ds": "4000002500003155",  # localstripe leaves its PaymentIntents in requires_action
}


class LocalStripe:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.runtime.localstripe_runner", "-", "--port", str(self.port),
             "--from-scratch"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.client = stripe.StripeClient(API_KEY, base_addresses={"api": self.url}, max_network_retries=0,
                                          http_client=stripe.RequestsClient())

    def wait_ready(self) -> None:
        import time

        for _ in range(100):
            try:
                self.client.v1.customers.list()
                return
            except stripe.APIConnectionError:
                assert self.proc.poll() is None, "localstripe exited"
                time.sleep(0.1)
        raise AssertionError("localstripe did not start")

    def webhook(self, name: str, url: str, secret: str) -> None:
        data = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
        with urllib.request.urlopen(f"{self.url}/_config/webhooks/{name}", data=data, timeout=5) as reply:
            assert reply.status == 200

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    # What a contractor's browser does with a client secret, in Stripe.js's stead.
    def pay(self, payment_intent_id: str, card: str = "visa") -> dict[str, Any]:
        method = self.card(card)
        self.client.v1.payment_intents.update(payment_intent_id, params={"payment_method": method})
        try:
            return self.client.v1.payment_intents.confirm(payment_intent_id).to_dict()
        except stripe.CardError as err:
            return {"error": err.code}

    def card(self, card: str) -> str:
        return self.client.v1.payment_methods.create(params={
            "type": "card", "card": {"number": CARDS[card], "exp_month": 12, "exp_year": 2034, "cvc": "123"}}).id

    def save_card(self, setup_intent_id: str, card: str = "visa") -> str:
        try:
            return self.client.v1.setup_intents.confirm(setup_intent_id,
                                                        params={"payment_method": self.card(card)}).status
        except stripe.CardError as err:
            return f"error:{err.code}"


def running_localstripe() -> Iterator[LocalStripe]:
    """One localstripe process of a stack's own: its webhook configuration and its state are that stack's."""
    server = LocalStripe()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hooked_stripe() -> Iterator[LocalStripe]:
    yield from running_localstripe()


@pytest.fixture(scope="session")
def quiet_stripe() -> Iterator[LocalStripe]:
    yield from running_localstripe()


def payment_settings(settings: Settings, stripe_url: str, **changes: Any) -> Settings:
    return dataclasses.replace(
        settings, stripe_api_key=API_KEY, stripe_api_base=stripe_url, **changes,
    )


# The gateway in front of the hooked wallet: it verifies localstripe's webhooks and signs the tests' tokens.
GATEWAY_CONFIG = GatewayConfig(stripe_webhook_secret=WEBHOOK_SECRET, jwt_secret=f"{SIGNING_KEY},{OLD_KEY}")


def payment_config(config: WalletConfig, **changes: Any) -> WalletConfig:
    return dataclasses.replace(config, payment_sweep_interval_ms=100, payment_retry_base_ms=200,
                               stripe_publishable_key=PUBLISHABLE_KEY, **changes)


@dataclasses.dataclass
class PayStack:
    """A wallet (and, for the hooked one, a gateway) on its own database, talking to one localstripe."""

    stripe: LocalStripe
    wallet: wallet_pb2_grpc.WalletServiceStub
    db: asyncpg.Pool
    wallet_target: str
    database_url: str
    gateway_url: str = ""
    gateway: Gateway | None = None


@pytest.fixture(scope="session")
async def hooked(servers: Servers, settings: Settings, wallet_config: WalletConfig,
                 hooked_stripe: LocalStripe) -> AsyncIterator[PayStack]:
    """Webhooks only: the sweeper waits an hour before asking about a pending top-up."""
    url = await fresh_database(servers)
    wallet_settings = payment_settings(settings, hooked_stripe.url, database_url=url)
    config = payment_config(wallet_config, payment_sweep_after_ms=3_600_000)
    async with serving(await WALLET.build(wallet_settings, 0, config)) as target:
        gateway = Gateway(wallet_settings, targets=dict.fromkeys(("wallet", "billing", "routing"), target),
                          config=GATEWAY_CONFIG)
        port = await gateway.start(0)
        gateway_url = f"http://127.0.0.1:{port}"
        hooked_stripe.webhook("callersync", f"{gateway_url}/v1/stripe/webhook", WEBHOOK_SECRET)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        async with grpc.aio.insecure_channel(target) as channel:
            yield PayStack(hooked_stripe, wallet_pb2_grpc.WalletServiceStub(channel), pool, target, url, gateway_url,
                           gateway)
        await pool.close()
        await gateway.stop(1)


@pytest.fixture(scope="session")
async def quiet(servers: Servers, settings: Settings, wallet_config: WalletConfig,
                quiet_stripe: LocalStripe) -> AsyncIterator[PayStack]:
    """No webhooks at all: only the sweeper (asking after 300 ms) learns that a payment succeeded."""
    url = await fresh_database(servers)
    wallet_settings = payment_settings(settings, quiet_stripe.url, database_url=url)
    config = payment_config(wallet_config, payment_sweep_after_ms=300)
    async with serving(await WALLET.build(wallet_settings, 0, config)) as target:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        async with grpc.aio.insecure_channel(target) as channel:
            yield PayStack(quiet_stripe, wallet_pb2_grpc.WalletServiceStub(channel), pool, target, url)
        await pool.close()


@pytest.fixture(scope="session")
def racing_stripe() -> Iterator[LocalStripe]:
    yield from running_localstripe()


@pytest.fixture(scope="session")
async def racing(servers: Servers, settings: Settings, wallet_config: WalletConfig,
                 racing_stripe: LocalStripe) -> AsyncIterator[PayStack]:
    """Webhooks and the sweeper both on: the sweeper asks about every pending top-up every 2 s, and localstripe's
    webhook comes about a second after a payment, so either may be first."""
    url = await fresh_database(servers)
    wallet_settings = payment_settings(settings, racing_stripe.url, database_url=url)
    config = dataclasses.replace(payment_config(wallet_config, payment_sweep_after_ms=0),
                                 payment_sweep_interval_ms=2000)
    async with serving(await WALLET.build(wallet_settings, 0, config)) as target:
        gateway = Gateway(wallet_settings, targets=dict.fromkeys(("wallet", "billing", "routing"), target),
                          config=GATEWAY_CONFIG)
        port = await gateway.start(0)
        gateway_url = f"http://127.0.0.1:{port}"
        racing_stripe.webhook("callersync", f"{gateway_url}/v1/stripe/webhook", WEBHOOK_SECRET)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        async with grpc.aio.insecure_channel(target) as channel:
            yield PayStack(racing_stripe, wallet_pb2_grpc.WalletServiceStub(channel), pool, target, url, gateway_url)
        await pool.close()
        await gateway.stop(1)


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def contractor_headers(contractor: str) -> dict[str, str]:
    return bearer(token("contractor", contractor, sub=f"user-of-{contractor}"))


def operator_headers() -> dict[str, str]:
    return bearer(token("operator", sub="ops-alice"))


async def eventually(check, timeout_s: float = 10.0, every_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Polls an async check until it returns something truthy; fails with the last value after timeout_s."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"not true within {timeout_s}s; last value {last!r}")


async def credits(db: asyncpg.Pool, contractor: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM wallet.entries WHERE contractor_id = $1 AND kind = 'top_up' ORDER BY entry_id",
                          contractor)


async def start_top_up(wallet, contractor: str, cents: int, key: str = "", email: str = "") -> pb.StartTopUpResponse:
    return await wallet.StartTopUp(pb.StartTopUpRequest(contractor_id=contractor, amount_cents=cents,
                                                        idempotency_key=key or f"start-{contractor}-{cents}",
                                                        email=email))


def signed(payload: dict[str, Any], secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    """A Stripe-style signed body: t=<unix time>,v1=<HMAC-SHA256 of 't.body'>."""
    import hashlib
    import hmac
    import time

    body = json.dumps(payload).encode()
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"
