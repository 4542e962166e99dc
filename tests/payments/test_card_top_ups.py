"""Card top-ups against a real localstripe: credited once per PaymentIntent, by the amount the provider received,
learned from the signed webhook or from the sweeper; nothing a client or an event body says is trusted."""

from __future__ import annotations

import asyncio
import time

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.payments.conftest import (
    contractor_headers,
    credits,
    eventually,
    operator_headers,
    signed,
    start_top_up,
)
from tests.payments.support import strangers_payment
from tests.wallet.support import expect_error


async def credited(stack, contractor):
    rows = await credits(stack.db, contractor)
    return rows if rows else None


async def test_a_card_top_up_is_credited_once_through_the_webhook_alone(hooked, smtp, contractor):
    started = await start_top_up(hooked.wallet, contractor, 5000, email=f"{contractor}@example.com")
    assert started.client_secret and started.publishable_key == "pk_test_callersync"
    assert started.top_up.state == pb.TOP_UP_STATE_PENDING
    pi = started.top_up.payment_intent_id
    assert hooked.stripe.pay(pi)["status"] == "succeeded"
    rows = await eventually(lambda: credited(hooked, contractor))
    await asyncio.sleep(0.5)  # room for a second, wrong credit
    rows = await credits(hooked.db, contractor)
    assert [(r["amount_cents"], r["reference"], r["credit_source"]) for r in rows] == [(5000, pi, "card")]
    got = await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=contractor, top_up_id=started.top_up.top_up_id))
    assert got.top_up.state == pb.TOP_UP_STATE_CREDITED and got.top_up.credited_cents == 5000
    assert got.top_up.card_last4 == "4242"
    receipt = await eventually(lambda: _mail(smtp, f"{contractor}@example.com"))
    assert b"$50.00" in receipt[0] and b"4242" in receipt[0] and b"New balance: $50.00" in receipt[0]


async def _mail(smtp, address):
    return smtp.to(address) or None


async def test_a_card_top_up_is_credited_by_the_sweeper_when_no_webhook_comes(quiet, contractor):
    started = await start_top_up(quiet.wallet, contractor, 2500)
    assert quiet.stripe.pay(started.top_up.payment_intent_id)["status"] == "succeeded"
    rows = await eventually(lambda: credited(quiet, contractor))
    await asyncio.sleep(0.8)  # several more sweeps
    rows = await credits(quiet.db, contractor)
    assert [(r["amount_cents"], r["credit_source"]) for r in rows] == [(2500, "card")]


async def test_webhook_sweeper_replays_and_out_of_order_events_credit_once(hooked, http, contractor):
    started = await start_top_up(hooked.wallet, contractor, 7500)
    pi = started.top_up.payment_intent_id
    # A signed "succeeded" event that arrives before the payment did (and claims a bigger amount): the wallet
    # asks the provider, which says it is not paid; nothing is credited.
    early = {"id": "evt_early", "type": "payment_intent.succeeded",
             "data": {"object": {"id": pi, "object": "payment_intent", "status": "succeeded",
                                 "amount": 1_000_000, "amount_received": 1_000_000}}}
    body, signature = signed(early)
    async with http.post(hooked.gateway_url + "/v1/stripe/webhook", data=body,
                         headers={"Stripe-Signature": signature}) as reply:
        assert reply.status == 200
        assert (await reply.json())["message"] == "PAYMENT_EVENT_OUTCOME_RECORDED"
    assert await credits(hooked.db, contractor) == []
    hooked.stripe.pay(pi)
    await eventually(lambda: credited(hooked, contractor))
    # The same event again, a stale failure event after it, and the sweeper's own question: no second credit.
    for event in (early, {**early, "id": "evt_late", "type": "payment_intent.payment_failed"}):
        body, signature = signed(event)
        async with http.post(hooked.gateway_url + "/v1/stripe/webhook", data=body,
                             headers={"Stripe-Signature": signature}) as reply:
            assert reply.status == 200
    for _ in range(3):
        again = await hooked.wallet.ApplyPaymentEvent(pb.ApplyPaymentEventRequest(object_id=pi))
        assert again.outcome == pb.PAYMENT_EVENT_OUTCOME_ALREADY_CREDITED
    rows = await credits(hooked.db, contractor)
    assert [(r["amount_cents"], r["reference"]) for r in rows] == [(7500, pi)]
    got = await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=contractor, top_up_id=started.top_up.top_up_id))
    assert got.top_up.state == pb.TOP_UP_STATE_CREDITED


async def test_forged_stale_or_unsigned_webhooks_are_refused_and_credit_nothing(hooked, http, contractor):
    started = await start_top_up(hooked.wallet, contractor, 5000)
    pi = started.top_up.payment_intent_id
    event = {"id": "evt_forged", "type": "payment_intent.succeeded", "data": {"object": {"id": pi}}}
    body, _ = signed(event)
    forged_body, forged = signed(event, secret="whsec_not_ours")
    stale_body, stale = signed(event, at=int(time.time()) - 3600)
    for data, headers in ((body, {}), (forged_body, {"Stripe-Signature": forged}),
                          (stale_body, {"Stripe-Signature": stale}),
                          (body, {"Stripe-Signature": "t=1,v1=00"})):
        async with http.post(hooked.gateway_url + "/v1/stripe/webhook", data=data, headers=headers) as reply:
            assert reply.status == 400, await reply.text()
    got = await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=contractor, top_up_id=started.top_up.top_up_id))
    assert got.top_up.state == pb.TOP_UP_STATE_PENDING
    assert await credits(hooked.db, contractor) == []


async def test_a_payment_intent_for_another_contractor_or_a_changed_amount_is_refused(hooked, contractor):
    # Someone makes their own PaymentIntent naming my top-up but another contractor, and pays it.
    mine, stranger = await strangers_payment(hooked, contractor)
    # The amount of my own PaymentIntent changed after we made it (a client tampering with it): refused.
    hooked.stripe.client.v1.payment_intents.update(mine.top_up.payment_intent_id, params={"amount": 2_000_000})
    hooked.stripe.pay(mine.top_up.payment_intent_id)
    await asyncio.sleep(1.5)  # the webhook is delivered a second after the payment
    reply = await hooked.wallet.ApplyPaymentEvent(
        pb.ApplyPaymentEventRequest(object_id=mine.top_up.payment_intent_id))
    assert reply.outcome in (pb.PAYMENT_EVENT_OUTCOME_REFUSED, pb.PAYMENT_EVENT_OUTCOME_ALREADY_CREDITED)
    assert reply.outcome == pb.PAYMENT_EVENT_OUTCOME_REFUSED
    got = await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=contractor, top_up_id=mine.top_up.top_up_id))
    assert got.top_up.state == pb.TOP_UP_STATE_REFUSED
    assert await credits(hooked.db, contractor) == []
    unknown = await hooked.wallet.ApplyPaymentEvent(pb.ApplyPaymentEventRequest(object_id="pi_does_not_exist"))
    assert unknown.outcome == pb.PAYMENT_EVENT_OUTCOME_UNKNOWN


async def test_a_declined_card_fails_the_top_up_in_plain_words_and_credits_nothing(hooked, contractor):
    started = await start_top_up(hooked.wallet, contractor, 5000)
    assert hooked.stripe.pay(started.top_up.payment_intent_id, "declined_when_charged") == {"error": "card_declined"}

    async def failed():
        got = await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=contractor,
                                                              top_up_id=started.top_up.top_up_id))
        return got.top_up if got.top_up.state == pb.TOP_UP_STATE_FAILED else None

    top_up = await eventually(failed)
    assert top_up.failure_code == "card_declined" and "declined" in top_up.failure_reason
    # 3-D Secure: localstripe leaves the PaymentIntent waiting for the cardholder.
    secure = await start_top_up(hooked.wallet, contractor, 5000, key=f"3ds-{contractor}")
    assert hooked.stripe.pay(secure.top_up.payment_intent_id, "3ds")["status"] == "requires_action"
    reply = await hooked.wallet.ApplyPaymentEvent(
        pb.ApplyPaymentEventRequest(object_id=secure.top_up.payment_intent_id))
    assert reply.outcome == pb.PAYMENT_EVENT_OUTCOME_RECORDED
    assert await credits(hooked.db, contractor) == []


async def test_start_top_up_is_idempotent_and_checks_its_amount(hooked, contractor):
    first = await start_top_up(hooked.wallet, contractor, 5000, key=f"k-{contractor}")
    again = await start_top_up(hooked.wallet, contractor, 5000, key=f"k-{contractor}")
    assert again.top_up.top_up_id == first.top_up.top_up_id
    assert again.top_up.payment_intent_id == first.top_up.payment_intent_id
    assert again.client_secret == first.client_secret
    await expect_error(start_top_up(hooked.wallet, contractor, 6000, key=f"k-{contractor}"),
                       grpc.StatusCode.ALREADY_EXISTS)
    await expect_error(start_top_up(hooked.wallet, contractor, 2499), grpc.StatusCode.INVALID_ARGUMENT)


async def test_a_manual_credit_needs_a_reason_and_its_reference_is_credited_once(hooked, contractor):
    def manual(key, reference, reason="bank transfer 2026-12-01, ticket OPS-7"):
        return hooked.wallet.TopUp(pb.TopUpRequest(contractor_id=contractor, amount_cents=10_000,
                                                   payment_reference=reference, idempotency_key=key, reason=reason))

    first = await manual(f"{contractor}-1", f"wire-{contractor}")
    assert first.entry.credit_source == pb.CREDIT_SOURCE_OPERATOR
    assert first.entry.description == "bank transfer 2026-12-01, ticket OPS-7"
    assert await manual(f"{contractor}-1", f"wire-{contractor}") == first  # the same request retried
    err = await expect_error(manual(f"{contractor}-2", f"wire-{contractor}"), grpc.StatusCode.ALREADY_EXISTS)
    assert "already credited" in err.details()
    await expect_error(manual(f"{contractor}-3", f"other-{contractor}", reason=""), grpc.StatusCode.INVALID_ARGUMENT)
    assert [r["amount_cents"] for r in await credits(hooked.db, contractor)] == [10_000]


async def test_a_contractor_token_starts_and_reads_its_own_top_ups_and_nothing_else(hooked, http, contractor):
    me = contractor_headers(contractor)
    base = hooked.gateway_url
    async with http.post(f"{base}/v1/wallets/{contractor}/topUps", headers=me,
                         json={"amountCents": "5000", "idempotencyKey": f"web-{contractor}"}) as reply:
        assert reply.status == 200, await reply.text()
        body = await reply.json()
    assert body["clientSecret"] and body["publishableKey"] and body["topUp"]["state"] == "TOP_UP_STATE_PENDING"
    top_up_id = body["topUp"]["topUpId"]
    async with http.get(f"{base}/v1/wallets/{contractor}/topUps/{top_up_id}", headers=me) as reply:
        assert reply.status == 200
    # The manual credit is the operators': 403 for a contractor, even for their own wallet.
    async with http.post(f"{base}/v1/wallets/{contractor}:topUp", headers=me,
                         json={"amountCents": "1000000", "paymentReference": "i-made-this-up", "idempotencyKey": "x",
                               "reason": "free money"}) as reply:
        assert reply.status == 403
    async with http.post(f"{base}/v1/wallets/someone-else/topUps", headers=me,
                         json={"amountCents": "5000", "idempotencyKey": "y"}) as reply:
        assert reply.status == 403
    async with http.get(f"{base}/v1/wallets/someone-else/topUps/{top_up_id}", headers=me) as reply:
        assert reply.status == 403
    async with http.post(f"{base}/v1/wallets/{contractor}:topUp", headers=operator_headers(),
                         json={"amountCents": "2500", "paymentReference": f"cheque-{contractor}",
                               "idempotencyKey": f"op-{contractor}", "reason": "cheque 1234"}) as reply:
        assert reply.status == 200
    assert [r["credit_source"] for r in await credits(hooked.db, contractor)] == ["operator"]


async def test_a_wallet_without_a_payment_provider_refuses_card_payments_and_writes_nothing(wallet, db, contractor):
    """The session's wallet has no CALLERSYNC_STRIPE_*: nothing is sent to Stripe, and the refusal says what to do."""
    err = await expect_error(start_top_up(wallet, contractor, 5000), grpc.StatusCode.FAILED_PRECONDITION)
    assert "CALLERSYNC_STRIPE_API_KEY" in err.details()
    await expect_error(wallet.ApplyPaymentEvent(pb.ApplyPaymentEventRequest(object_id="pi_x")),
                       grpc.StatusCode.FAILED_PRECONDITION)
    assert await db.fetchval("SELECT count(*) FROM wallet.top_ups WHERE contractor_id = $1", contractor) == 0
