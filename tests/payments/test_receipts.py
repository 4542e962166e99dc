"""Every successful top-up emails a receipt: one started without an address (through the API) goes to the
contractor's contact address."""

from __future__ import annotations

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.payments.conftest import contractor_headers, credits, eventually
from tests.wallet.support import top_up


async def test_an_api_top_up_without_an_email_sends_its_receipt_to_the_contact_address(hooked, http, smtp,
                                                                                        contractor):
    address = f"contact-{contractor}@example.com"
    await top_up(hooked.wallet, contractor, 2500)
    await hooked.wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id=contractor, email=address))
    async with http.post(f"{hooked.gateway_url}/v1/wallets/{contractor}/topUps", headers=contractor_headers(contractor),
                         json={"amountCents": "5000", "idempotencyKey": f"api-{contractor}"}) as reply:
        assert reply.status == 200, await reply.text()
        started = await reply.json()
    assert started["topUp"].get("email", "") == ""
    hooked.stripe.pay(started["topUp"]["paymentIntentId"])

    async def card_credit():
        return [r for r in await credits(hooked.db, contractor) if r["credit_source"] == "card"] or None

    await eventually(card_credit)
    [receipt] = await eventually(lambda: _mail(smtp, address))
    assert b"CallerSync receipt: $50.00 added to your wallet" in receipt
    assert b"4242" in receipt and b"New balance: $75.00" in receipt


async def _mail(smtp, address):
    return smtp.to(address) or None
