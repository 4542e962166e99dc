"""StartTopUp retried concurrently under one idempotency key (a double-clicked button, a client retrying on a
timeout): every caller pays the one PaymentIntent the top-up records, and any other made in the race is canceled
at the provider so nobody can pay it."""

from __future__ import annotations

import asyncio

from tests.payments.conftest import credits, eventually, start_top_up


async def test_concurrent_starts_under_one_key_all_get_the_recorded_payment_intent(hooked, contractor):
    key = f"race-{contractor}"
    replies = await asyncio.gather(*(start_top_up(hooked.wallet, contractor, 5000, key=key) for _ in range(8)))
    recorded = await hooked.db.fetchrow("SELECT top_up_id, payment_intent_id FROM wallet.top_ups"
                                        " WHERE contractor_id = $1", contractor)
    pi = recorded["payment_intent_id"]
    assert {r.top_up.top_up_id for r in replies} == {str(recorded["top_up_id"])}
    assert {r.top_up.payment_intent_id for r in replies} == {pi}
    assert {r.client_secret.split("_secret_")[0] for r in replies} == {pi}
    assert len({r.client_secret for r in replies}) == 1

    made = [p for p in hooked.stripe.client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
            if p.to_dict().get("metadata", {}).get("top_up_id") == str(recorded["top_up_id"])]
    assert pi in {p.id for p in made}
    assert {p.status for p in made if p.id != pi} <= {"canceled"}

    assert hooked.stripe.pay(pi)["status"] == "succeeded"
    await eventually(lambda: _credited(hooked, contractor))
    await asyncio.sleep(0.5)  # room for a second, wrong credit
    assert [(r["amount_cents"], r["reference"]) for r in await credits(hooked.db, contractor)] == [(5000, pi)]


async def _credited(stack, contractor):
    return await credits(stack.db, contractor) or None
