"""The operator console: a large refund needs a second operator, an approval in part, a manual credit with a
reason that the contractor reads in their ledger."""

import re

from tests.web.conftest import OPERATOR_EMAIL, SECOND_OPERATOR_EMAIL, check, sign_in
from tests.web.seed import balance, billable_call, claim, contractor_with_wallet


async def _ask_refund(stack, phone, cid, call_id) -> None:
    await phone.goto(f"{stack.url}/app/c/{cid}/calls/{call_id}")
    await phone.get_by_label(re.compile("System bug")).check()
    await phone.get_by_role("button", name=re.compile("Request a refund")).click()
    await phone.wait_for_url(re.compile(".*#refund$"))


async def _open_case(desk, stack, cid) -> None:
    await desk.goto(f"{stack.url}/app/ops/")
    await desk.get_by_role("row").filter(has_text=cid).get_by_role("link", name="Review").click()


async def test_a_large_refund_waits_for_a_second_operator(stack, phone, desk, browser):
    cid, address = await contractor_with_wallet(stack, 50_000)
    zip_code = await claim(stack, cid, 15_000)
    decision = await billable_call(stack, cid, zip_code)
    await sign_in(phone, stack, address)
    await _ask_refund(stack, phone, cid, decision.call_id)
    before = await balance(stack, cid)

    await sign_in(desk, stack, OPERATOR_EMAIL)
    await _open_case(desk, stack, cid)
    assert "an approval needs a second operator" in await desk.content()
    await desk.get_by_role("radio", name=re.compile("^Approve")).check()
    await desk.get_by_label("Reason (the contractor reads this)").fill("Our routing bug, confirmed.")
    await desk.get_by_role("button", name="Record decision").click()
    await desk.get_by_test_id("first-approval").wait_for()
    assert "waiting for a second operator" in await desk.get_by_test_id("first-approval").inner_text()
    await check(desk, "operator-first-approval")
    assert await balance(stack, cid) == before

    second = await (await browser.new_context(bypass_csp=True)).new_page()
    await sign_in(second, stack, SECOND_OPERATOR_EMAIL)
    await _open_case(second, stack, cid)
    await second.get_by_role("radio", name=re.compile("^Approve")).check()
    await second.get_by_label("Reason (the contractor reads this)").fill("Confirmed.")
    await second.get_by_role("button", name="Record decision").click()
    await second.get_by_test_id("case-state").get_by_text("Refunded").wait_for()
    await second.context.close()
    assert await balance(stack, cid) == before + 15_000


async def test_an_operator_approves_in_part_and_credits_by_hand(stack, phone, desk):
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    await sign_in(phone, stack, address)
    await _ask_refund(stack, phone, cid, decision.call_id)
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await _open_case(desk, stack, cid)
    await desk.get_by_role("radio", name=re.compile("^Approve")).check()
    await desk.get_by_label(re.compile("Approve in part")).fill("20")
    await desk.get_by_label("Reason (the contractor reads this)").fill("Half the call was our fault.")
    await desk.get_by_role("button", name="Record decision").click()
    await desk.get_by_test_id("case-state").get_by_text("Refunded").wait_for()
    assert await balance(stack, cid) == 20_000 - 4500 + 2000

    await desk.goto(f"{stack.url}/app/ops/contractors?id={cid}")
    await desk.get_by_label("Amount (dollars, at least $25)").fill("30")
    await desk.get_by_label(re.compile("Payment reference")).fill("wire-778")
    await desk.get_by_label("Reason").fill("Goodwill after the outage")
    await desk.get_by_role("button", name="Credit wallet").click()
    await desk.wait_for_url(re.compile(".*/app/ops/contractors\\?id="))
    await check(desk, "operator-contractor")
    assert await balance(stack, cid) == 20_000 - 4500 + 2000 + 3000
    await phone.goto(f"{stack.url}/app/c/{cid}/ledger")
    assert "Goodwill after the outage" in await phone.content()


async def test_the_rate_card_shows_who_would_pause_before_a_rate_rises(stack, desk):
    import asyncio

    from callersync.routing.v1 import routing_pb2 as rpb
    from callersync.wallet.v1 import wallet_pb2 as wpb

    poor, _ = await contractor_with_wallet(stack, 5000)
    rich, _ = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, poor, 3000)
    await stack.routing.ClaimZip(rpb.ClaimZipRequest(contractor_id=rich, zip=zip_code,
                                                     position=rpb.CLAIM_POSITION_BACKUP))
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("link", name="Rate card").click()
    await desk.locator("#pzip").fill(zip_code)
    await desk.get_by_label("New rate (dollars)").fill("60")
    await desk.get_by_role("button", name="Show who would pause").click()
    table = desk.get_by_role("region", name="Who would pause")
    assert "Would pause ($50.00 below $60.00)" in await table.get_by_role("row").filter(has_text=poor).inner_text()
    assert "Keeps receiving calls" in await table.get_by_role("row").filter(has_text=rich).inner_text()
    await check(desk, "operator-rate-preview")

    await desk.locator("#zip").fill(zip_code)
    await desk.get_by_label("Rate per billable call (dollars)").fill("60")
    await desk.get_by_role("button", name="Set rate").click()
    await desk.wait_for_url(f"{stack.url}/app/ops/rates")
    for _ in range(100):  # routing hears of the new rate and pushes the new pause line
        if (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=poor))).wallet.paused:
            break
        await asyncio.sleep(0.1)
    assert (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=poor))).wallet.paused
    assert not (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=rich))).wallet.paused
