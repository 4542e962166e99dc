"""The demo's money in: a contractor paying by card and an auto top-up, with the demo playing the contractor's
browser against the payment provider (localstripe from `callersync up`, or Stripe in test mode). Without a
provider the demo credits by hand, as an operator, with a reason."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import stripe

from callersync.wallet.v1 import wallet_pb2 as wpb
from services.runtime import stack_file
from services.runtime.config import Settings

TIMEOUT_S = 10.0
CREDIT_WAIT_S = 40.0
TEST_CARD = "4242424242424242"


def provider_base(settings: Settings) -> str:
    """Where the provider answers: the configured one, else the localstripe of the `callersync up` whose wallet
    this demo talks to (its stack.json says so); "" if none."""
    if settings.has_payment_provider():
        return settings.stripe_api_base
    data_dir = stack_file.find_data_dir()
    state = stack_file.read(data_dir) if data_dir is not None else None
    if not state or (state.get("targets") or {}).get("wallet") != settings.target_of("wallet"):
        return ""
    url = str((state.get("payments") or {}).get("api_base") or "")
    try:
        urllib.request.urlopen(f"{url}/js.stripe.com/v3/", timeout=1).close()
    except (urllib.error.URLError, OSError, ValueError):
        return ""
    return url


class Browser:
    """What Stripe.js does in a contractor's browser with a client secret: here through the API (test mode only)."""

    def __init__(self, api_base: str, api_key: str) -> None:
        self._client = stripe.StripeClient(api_key or "sk_test_localstripe", base_addresses={"api": api_base},
                                           http_client=stripe.RequestsClient())

    def _card(self) -> str:
        return self._client.v1.payment_methods.create(params={
            "type": "card", "card": {"number": TEST_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}).id

    def pay(self, payment_intent_id: str) -> str:
        self._client.v1.payment_intents.update(payment_intent_id, params={"payment_method": self._card()})
        return str(self._client.v1.payment_intents.confirm(payment_intent_id).status)

    def save_card(self, setup_intent_id: str) -> str:
        return str(self._client.v1.setup_intents.confirm(setup_intent_id,
                                                         params={"payment_method": self._card()}).status)


async def card_top_up(wallet: Any, browser: Browser, contractor_id: str, cents: int, key: str) -> wpb.TopUp:
    """StartTopUp, the browser pays, and the wallet credits once the provider says so (webhook or sweeper)."""
    started = await wallet.StartTopUp(
        wpb.StartTopUpRequest(contractor_id=contractor_id, amount_cents=cents, idempotency_key=key),
        timeout=TIMEOUT_S)
    await asyncio.to_thread(browser.pay, started.top_up.payment_intent_id)
    return await credited(wallet, contractor_id, started.top_up.top_up_id)


async def credited(wallet: Any, contractor_id: str, top_up_id: str) -> wpb.TopUp:
    deadline = time.monotonic() + CREDIT_WAIT_S
    while True:
        top_up = (await wallet.GetTopUp(wpb.GetTopUpRequest(contractor_id=contractor_id, top_up_id=top_up_id),
                                        timeout=TIMEOUT_S)).top_up
        if top_up.state != wpb.TOP_UP_STATE_PENDING or time.monotonic() > deadline:
            return top_up
        await asyncio.sleep(0.2)


async def auto_top_up_credit(wallet: Any, contractor_id: str, after_entry_id: int) -> wpb.LedgerEntry | None:
    """The first card credit after after_entry_id (an auto top-up's), or None if none came in time."""
    deadline = time.monotonic() + CREDIT_WAIT_S
    while time.monotonic() < deadline:
        entries = (await wallet.ListEntries(wpb.ListEntriesRequest(contractor_id=contractor_id, page_size=20),
                                            timeout=TIMEOUT_S)).entries
        for entry in entries:
            if entry.entry_id > after_entry_id and entry.credit_source == wpb.CREDIT_SOURCE_CARD:
                return entry
        await asyncio.sleep(0.2)
    return None
