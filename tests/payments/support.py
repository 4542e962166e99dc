"""What the payment tests do again and again: a funded wallet, a saved card, the settings, a charge, a stranger's
payment naming my top-up."""

from __future__ import annotations

import uuid

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.payments.conftest import start_top_up


async def funded(stack, contractor: str, cents: int = 10_000, pause_cents: int = 1000) -> None:
    await stack.wallet.TopUp(pb.TopUpRequest(contractor_id=contractor, amount_cents=cents, reason="opening credit",
                                             payment_reference=f"open-{contractor}",
                                             idempotency_key=f"open-{contractor}"))
    await stack.wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor,
                                                                     threshold_cents=pause_cents))


async def save_card(stack, contractor: str, card: str = "visa") -> None:
    setup = await stack.wallet.StartCardSetup(pb.StartCardSetupRequest(contractor_id=contractor,
                                                                       email=f"{contractor}@example.com"))
    assert setup.client_secret and setup.setup_intent_id.startswith("seti_")
    stack.stripe.save_card(setup.setup_intent_id, card)


def auto(contractor: str, threshold: int = 5000, amount: int = 5000, per_day: int = 50_000, enabled: bool = True):
    return pb.SetAutoTopUpRequest(contractor_id=contractor, enabled=enabled, threshold_cents=threshold,
                                  amount_cents=amount, max_per_day_cents=per_day, email=f"{contractor}@example.com")


async def charge(stack, contractor: str, cents: int) -> None:
    await stack.wallet.Charge(pb.ChargeRequest(contractor_id=contractor, amount_cents=cents,
                                               idempotency_key=uuid.uuid4().hex, reference="booking"))


async def auto_top_ups(stack, contractor: str):
    return await stack.db.fetch("SELECT * FROM wallet.top_ups WHERE contractor_id = $1 AND origin = 'auto'"
                                " ORDER BY created_at", contractor)


async def strangers_payment(stack, contractor: str):
    """My $50 top-up, and a PaymentIntent someone else made naming it for another contractor, paid and refused:
    (my StartTopUp reply, the stranger's PaymentIntent)."""
    mine = await start_top_up(stack.wallet, contractor, 5000)
    stranger = stack.stripe.client.v1.payment_intents.create(params={
        "amount": 5000, "currency": "usd", "payment_method_types": ["card"],
        "metadata": {"contractor_id": "someone-else", "top_up_id": mine.top_up.top_up_id}})
    stack.stripe.pay(stranger.id)
    reply = await stack.wallet.ApplyPaymentEvent(pb.ApplyPaymentEventRequest(object_id=stranger.id))
    assert reply.outcome == pb.PAYMENT_EVENT_OUTCOME_REFUSED
    return mine, stranger
