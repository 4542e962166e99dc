"""A payment the bank wants confirmed (3-D Secure) is finished by the contractor, present, on the page the email
links to: the page hands Stripe.js (localstripe's stand-in here) the PaymentIntent's client secret, the bank's
confirmation is given, and the wallet credits the payment."""

import email
import re
import urllib.parse
import uuid
from types import SimpleNamespace

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.payments.conftest import credits, eventually
from tests.payments.support import auto, funded, save_card
from tests.web.conftest import check, sign_in


async def test_the_emailed_link_lets_the_contractor_confirm_an_auto_top_up_their_bank_held(hooked, smtp, phone):
    cid = f"ctr-{uuid.uuid4().hex[:10]}"
    address = f"{cid}@example.com"  # where auto top-up emails and sign-in links both go
    await funded(hooked, cid, cents=10_000)
    await hooked.wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id=cid, email=address))
    await save_card(hooked, cid)
    await hooked.wallet.SetAutoTopUp(auto(cid, threshold=5000, amount=5000))
    # A saved card whose bank asks for 3-D Secure on every charge (localstripe cannot save one through a setup).
    await hooked.db.execute("UPDATE wallet.auto_top_ups SET payment_method_id = $2 WHERE contractor_id = $1",
                            cid, hooked.stripe.card("3ds"))
    await hooked.wallet.Charge(pb.ChargeRequest(contractor_id=cid, amount_cents=6000, idempotency_key=uuid.uuid4().hex,
                                                reference="booking"))  # $100 -> $40, below the $50 threshold

    async def confirm_mail():
        return [m for m in smtp.to(address) if b"confirm your auto top-up" in m.lower()] or None

    [mail] = await eventually(confirm_mail)
    body = email.message_from_bytes(mail).get_payload(decode=True).decode()
    [link] = re.findall(r"https?://\S+/money/topups/\S+", body)
    path = urllib.parse.urlsplit(link).path

    await sign_in(phone, SimpleNamespace(url=hooked.gateway_url, smtp=smtp), address)
    await phone.goto(hooked.gateway_url + path)
    await phone.get_by_text("Your bank asks you to confirm the payment").wait_for()
    await check(phone, "confirm-payment")
    await phone.get_by_role("button", name="Confirm the payment").click()
    await phone.get_by_role("button", name="Complete authentication").click()  # localstripe's 3-D Secure prompt
    await phone.get_by_test_id("top-up-state").get_by_text("Paid and credited to your wallet").wait_for(timeout=15_000)
    assert await phone.get_by_test_id("balance").inner_text() == "$90.00"
    assert [r["amount_cents"] for r in await credits(hooked.db, cid) if r["credit_source"] == "card"] == [5000]
