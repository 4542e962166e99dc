"""Auto top-up at its edges: a one-off card top-up never turns it on; a credit that comes after the pause line
leaves the pause working as without auto top-up (and lifts it once it lands); a card is saved only when the
provider says its setup succeeded, learned from the setup_intent webhook."""

from __future__ import annotations

import json
import urllib.request

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.payments.conftest import credits, eventually, signed, start_top_up
from tests.payments.support import auto, auto_top_ups, charge, funded, save_card


async def _wallet(stack, contractor):
    return (await stack.wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor))).wallet


async def _card_credits(stack, contractor):
    return [r for r in await credits(stack.db, contractor) if r["credit_source"] == "card"] or None


async def test_a_one_off_card_top_up_never_turns_auto_top_up_on(hooked, contractor):
    await funded(hooked, contractor, cents=10_000, pause_cents=1000)
    await save_card(hooked, contractor)
    started = await start_top_up(hooked.wallet, contractor, 5000)
    assert hooked.stripe.pay(started.top_up.payment_intent_id)["status"] == "succeeded"
    await eventually(lambda: _card_credits(hooked, contractor))
    wallet = await _wallet(hooked, contractor)
    assert not wallet.auto_top_up.enabled and not wallet.auto_top_up.consented_at.seconds
    assert await hooked.db.fetchval("SELECT consented_at FROM wallet.auto_top_ups WHERE contractor_id = $1",
                                    contractor) is None
    await charge(hooked, contractor, 14_500)  # 15,000 -> 500: far below any threshold
    assert (await _wallet(hooked, contractor)).paused
    assert await auto_top_ups(hooked, contractor) == []


def _authenticate(stack, payment_intent_id: str) -> None:
    """What localstripe's Stripe.js stand-in does when the cardholder completes 3-D Secure."""
    secret = stack.stripe.client.v1.payment_intents.retrieve(payment_intent_id).client_secret
    request = urllib.request.Request(
        f"{stack.stripe.url}/v1/payment_intents/{payment_intent_id}/_authenticate?success=true",
        data=json.dumps({"key": "pk_test_callersync", "client_secret": secret}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert json.load(reply)["status"] == "succeeded"


async def test_when_the_auto_top_up_credit_comes_too_late_the_pause_works_as_without_it(hooked, contractor):
    await funded(hooked, contractor, cents=10_000, pause_cents=3000)
    await save_card(hooked, contractor)
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000))
    # The bank holds the charge for the cardholder (3-D Secure): no credit until they confirm it.
    await hooked.db.execute("UPDATE wallet.auto_top_ups SET payment_method_id = $2 WHERE contractor_id = $1",
                            contractor, hooked.stripe.card("3ds"))
    await charge(hooked, contractor, 6000)  # 10,000 -> 4,000: below the threshold, above the pause line
    [held] = await eventually(lambda: _in_state(hooked, contractor, "requires_action"))
    assert not (await _wallet(hooked, contractor)).paused
    await charge(hooked, contractor, 2000)  # 4,000 -> 2,000: below the pause line, the credit not there
    wallet = await _wallet(hooked, contractor)
    assert wallet.paused and wallet.balance_cents == 2000
    _authenticate(hooked, held["payment_intent_id"])  # the contractor confirms, later
    await eventually(lambda: _card_credits(hooked, contractor))
    wallet = await _wallet(hooked, contractor)
    assert wallet.balance_cents == 7000 and not wallet.paused


async def _in_state(stack, contractor, state):
    return [t for t in await auto_top_ups(stack, contractor) if t["state"] == state] or None


async def _event(http, stack, kind: str, object_id: str) -> str:
    body, signature = signed({"id": f"evt_{object_id}", "type": kind,
                              "data": {"object": {"id": object_id, "object": "setup_intent"}}})
    async with http.post(stack.gateway_url + "/v1/stripe/webhook", data=body,
                         headers={"Stripe-Signature": signature}) as reply:
        assert reply.status == 200
        return (await reply.json())["message"]


async def test_the_setup_intent_webhook_saves_the_card_and_a_declined_setup_saves_nothing(hooked, http, contractor):
    await funded(hooked, contractor)
    setup = await hooked.wallet.StartCardSetup(pb.StartCardSetupRequest(contractor_id=contractor,
                                                                        email=f"{contractor}@example.com"))
    assert hooked.stripe.save_card(setup.setup_intent_id) == "succeeded"
    assert await _event(http, hooked, "setup_intent.succeeded", setup.setup_intent_id) == \
        "PAYMENT_EVENT_OUTCOME_CARD_SAVED"
    saved = (await _wallet(hooked, contractor)).auto_top_up
    assert (saved.card_brand.lower(), saved.card_last4) == ("visa", "4242")

    other = f"{contractor}-b"
    await funded(hooked, other)
    declined = await hooked.wallet.StartCardSetup(pb.StartCardSetupRequest(contractor_id=other,
                                                                           email=f"{other}@example.com"))
    assert hooked.stripe.save_card(declined.setup_intent_id, "declined_at_setup") == "error:card_declined"
    # Whatever the event says, the wallet asks the provider, which says the setup did not succeed.
    for kind in ("setup_intent.setup_failed", "setup_intent.succeeded"):
        assert await _event(http, hooked, kind, declined.setup_intent_id) == "PAYMENT_EVENT_OUTCOME_RECORDED"
    assert (await _wallet(hooked, other)).auto_top_up.card_last4 == ""
    assert await hooked.db.fetchval("SELECT payment_method_id FROM wallet.auto_top_ups WHERE contractor_id = $1",
                                    other) == ""
