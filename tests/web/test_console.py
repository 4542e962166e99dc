"""The operator console: a large refund needs a second operator, an approval in part, a manual credit with a
reason that the contractor reads in their ledger."""

import re

from tests.web.conftest import OPERATOR_EMAIL, SECOND_OPERATOR_EMAIL, ask_refund, check, sign_in
from tests.web.seed import balance, billable_call, claim, contractor_with_wallet


async def _ask_refund(stack, phone, cid, call_id) -> None:
    await phone.goto(f"{stack.url}/app/c/{cid}/calls/{call_id}")
    await ask_refund(phone)


async def _open_case(desk, stack, cid) -> None:
    await desk.goto(f"{stack.url}/app/ops/")
    await desk.get_by_role("row").filter(has_text=cid).get_by_role("link", name="Review").click()


async def _case_under_review(stack, phone, desk):
    """A $45 charge whose contractor asked for a refund, open in the operator's console; its contractor."""
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    await sign_in(phone, stack, address)
    await _ask_refund(stack, phone, cid, decision.call_id)
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await _open_case(desk, stack, cid)
    return cid


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
    cid = await _case_under_review(stack, phone, desk)
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


async def _refund_case(stack, cid: str, zip_code: str, note: str) -> None:
    from callersync.billing.v1 import billing_pb2 as bpb

    decision = await billable_call(stack, cid, zip_code)
    await stack.billing.RequestRefund(bpb.RequestRefundRequest(
        contractor_id=cid, charge_id=decision.charge_id, reason=bpb.REFUND_REASON_SYSTEM_BUG, note=note,
        idempotency_key=decision.charge_id))


async def test_the_queue_puts_the_case_waiting_longest_first(stack, desk):
    first, _ = await contractor_with_wallet(stack, 20_000)
    second, _ = await contractor_with_wallet(stack, 20_000)
    third, _ = await contractor_with_wallet(stack, 20_000)
    for cid in (first, second, third):  # asked in this order
        await _refund_case(stack, cid, await claim(stack, cid, 3000), "asked")
    await sign_in(desk, stack, OPERATOR_EMAIL)
    rows = await desk.get_by_role("region", name="Refund review queue").locator("tbody tr").all_inner_texts()
    order = [next(i for i, row in enumerate(rows) if cid in row) for cid in (first, second, third)]
    assert order == sorted(order), (order, rows)
    asked = [r.split("\t")[0] for r in rows]
    assert asked == sorted(asked), "the whole queue is oldest first"
    await check(desk, "operator-queue-oldest-first")


async def test_the_contractor_reads_the_reason_an_operator_gave_for_rejecting(stack, phone, desk):
    cid = await _case_under_review(stack, phone, desk)
    await desk.get_by_role("radio", name="Reject").check()
    await desk.get_by_label("Reason (the contractor reads this)").fill("The caller booked a job: not a bug.")
    await desk.get_by_role("button", name="Record decision").click()
    await desk.get_by_test_id("case-state").get_by_text("Declined by an operator").wait_for()
    assert await balance(stack, cid) == 20_000 - 4500

    await phone.reload()
    assert "Declined by an operator" in await phone.get_by_test_id("refund-state").inner_text()
    assert "Answer: The caller booked a job: not a bug." in await phone.content()
    await check(phone, "refund-rejected")


async def test_an_operator_blocks_a_caller_and_routing_rings_nobody_for_them(stack, desk):
    import uuid

    from callersync.routing.v1 import routing_pb2 as rpb

    cid, _ = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 3000)
    caller = f"+1415{uuid.uuid4().int % 10_000_000:07d}"
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("link", name="Blocked callers").click()
    await desk.get_by_label("Caller number (E.164, e.g. +14155550123)").fill(caller)
    await desk.get_by_label("Why").fill("Robocaller, three refunds")
    await desk.get_by_role("button", name="Block caller").click()
    await desk.wait_for_url(f"{stack.url}/app/ops/blocked")
    row = desk.get_by_role("region", name="Blocked callers").get_by_role("row").filter(has_text=caller)
    assert "Robocaller, three refunds" in await row.inner_text()
    assert OPERATOR_EMAIL in await row.inner_text()
    await check(desk, "operator-blocked-caller")
    routed = await stack.routing.RouteCall(rpb.RouteCallRequest(call_id=f"call-{uuid.uuid4().hex[:8]}",
                                                                zip=zip_code, caller_number=caller))
    assert routed.outcome == rpb.ROUTE_OUTCOME_CALLER_BLOCKED
