"""Money in from the browser: a card top-up (Stripe Elements; localstripe's stand-in here) credited and seen on the
page, and a card saved with Elements that auto top-up charges when the balance falls."""

import asyncio
import dataclasses
import re
import uuid

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.wallet.support import top_up
from tests.web.conftest import assert_contractor_scope, check, sign_in


@dataclasses.dataclass
class PaySite:
    url: str
    smtp: object


async def _contractor(hooked) -> tuple[str, str]:
    cid = f"ctr-{uuid.uuid4().hex[:10]}"
    address = f"{cid}@example.com"
    await top_up(hooked.wallet, cid, 5000)
    await hooked.wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id=cid, email=address))
    return cid, address


async def _fill_card(page) -> None:
    """localstripe's stand-in card element: one text field per part, named by placeholder."""
    for field, value in (("number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123"),
                         ("postal_code", "30301")):
        await page.locator(f"#card input[placeholder={field}]").fill(value)


async def test_a_card_top_up_is_credited_and_the_balance_changes(hooked, smtp, phone):
    cid, address = await _contractor(hooked)
    site = PaySite(hooked.gateway_url, smtp)
    await sign_in(phone, site, address)
    await phone.get_by_role("link", name="Money").click()
    await check(phone, "money")
    await phone.get_by_label("Amount (dollars, at least $25)").fill("100")
    await phone.get_by_role("button", name="Continue to card details").click()
    await phone.get_by_role("button", name="Pay $100.00").wait_for()
    await phone.locator("#card input[placeholder=number]").wait_for()  # Stripe.js (localstripe's) mounted
    await check(phone, "pay-by-card", exclude=("#card",))
    state_link = phone.get_by_role("link", name="See this top-up's state")
    top_up_id = (await state_link.get_attribute("href")).rsplit("/", 1)[-1]
    started = (await hooked.wallet.GetTopUp(pb.GetTopUpRequest(contractor_id=cid, top_up_id=top_up_id))).top_up
    assert started.state == pb.TOP_UP_STATE_PENDING and started.amount_cents == 10_000
    # localstripe's Stripe.js stand-in cannot attach a card to a PaymentIntent (its confirmCardPayment only
    # handles 3-D Secure): its API confirms the payment in Stripe.js's stead, as tests/payments do.
    hooked.stripe.pay(started.payment_intent_id)
    await state_link.click()
    await phone.get_by_test_id("top-up-state").get_by_text("Paid and credited to your wallet").wait_for(timeout=15_000)
    assert await phone.get_by_test_id("balance").inner_text() == "$150.00"
    await check(phone, "top-up-credited")


async def test_a_card_saved_with_elements_pays_the_auto_top_up(hooked, smtp, phone):
    cid, address = await _contractor(hooked)
    site = PaySite(hooked.gateway_url, smtp)
    await sign_in(phone, site, address)
    await phone.goto(f"{hooked.gateway_url}/app/c/{cid}/money")
    await phone.get_by_role("button", name="Save a card").click()
    await _fill_card(phone)
    await check(phone, "save-card", exclude=("#card",))
    await phone.get_by_role("button", name="Save card").click()
    await phone.wait_for_url(f"{hooked.gateway_url}/app/c/{cid}/money")
    await phone.get_by_label(re.compile("Top up automatically")).check()
    await phone.get_by_label(re.compile("When my balance falls below")).fill("40")
    await phone.get_by_label("Charge (dollars, at least $25)").fill("25")
    await phone.get_by_label("At most per day (dollars)").fill("100")
    await phone.get_by_role("button", name="Save auto top-up").click()
    await phone.get_by_text("Auto top-up on").wait_for()
    # Turning it on makes the wallet ask the provider about card setups still pending (localstripe sends no
    # webhook for a SetupIntent): the card saved in the browser is the one on file.
    assert re.search(r"Visa ending 4242", await phone.get_by_test_id("saved-card").inner_text(), re.I)
    await check(phone, "auto-top-up-on")

    await hooked.wallet.Charge(pb.ChargeRequest(contractor_id=cid, amount_cents=2000, idempotency_key=uuid.uuid4().hex,
                                                reference="booking"))  # $50 -> $30, below the $40 threshold
    for _ in range(75):
        await phone.reload()
        if await phone.get_by_test_id("balance").inner_text() == "$55.00":
            break
        await asyncio.sleep(0.2)
    assert await phone.get_by_test_id("balance").inner_text() == "$55.00"


async def test_no_card_form_or_top_up_page_needs_operator_scope(hooked, smtp, phone):
    """The money pages' card forms and a top-up's page, as a contractor: only contractor-reachable API methods,
    none refused (the other contractor pages: test_flows.py)."""
    cid, address = await _contractor(hooked)
    site = PaySite(hooked.gateway_url, smtp)
    await sign_in(phone, site, address)
    hooked.gateway.web.api_calls.clear()
    await phone.goto(f"{hooked.gateway_url}/app/c/{cid}/money")
    await phone.get_by_role("button", name="Continue to card details").click()
    await phone.get_by_role("button", name="Pay $100.00").wait_for()
    await phone.get_by_role("link", name="See this top-up's state").click()
    await phone.get_by_test_id("top-up-state").get_by_text("Waiting for the payment").wait_for()
    await phone.goto(f"{hooked.gateway_url}/app/c/{cid}/money")
    await phone.get_by_role("button", name="Save a card").click()
    await phone.get_by_role("button", name="Save card").wait_for()
    await check(phone, "top-up-waiting-scope", exclude=("#card",))
    assert_contractor_scope(hooked.gateway, {"contractor.money", "contractor.start_top_up", "contractor.top_up",
                                             "contractor.start_card_setup"})
