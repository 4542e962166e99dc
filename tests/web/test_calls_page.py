"""Calls & charges lists every call that rang the contractor, free ones too, a page at a time; the operator's
contractor lookup shows their calls as well as their charges."""

import datetime as dt

from services.gateway.web.contractor_pages import PAGE_SIZE
from tests.web.conftest import OPERATOR_EMAIL, check, sign_in
from tests.web.seed import billable_call, claim, contractor_with_wallet, five_minutes_ago, free_call


async def test_free_calls_are_listed_with_the_billable_ones_a_page_at_a_time(stack, phone, desk):
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    newest = five_minutes_ago()
    billed = await billable_call(stack, cid, zip_code, anchor=newest)
    free = [await free_call(stack, cid, zip_code, anchor=newest - dt.timedelta(minutes=1 + i))
            for i in range(PAGE_SIZE)]
    assert billed.billable and not any(d.billable for d in free)

    await sign_in(phone, stack, address)
    await phone.get_by_role("link", name="Calls & charges").click()
    calls = phone.get_by_role("region", name="Calls, billable and free")
    assert await calls.get_by_role("row").count() == PAGE_SIZE + 1  # the header and a full page
    first_free = await calls.get_by_role("row").filter(has_text=free[0].call_id).inner_text()
    assert "Free" in first_free and "did not answer" in first_free
    charges = phone.get_by_role("region", name="Charges")
    assert await charges.get_by_role("row").filter(has_text=billed.call_id).count() == 1
    await check(phone, "calls-page")

    await phone.get_by_role("link", name="Older calls").click()
    calls = phone.get_by_role("region", name="Calls, billable and free")
    assert await calls.get_by_role("row").filter(has_text=free[-1].call_id).count() == 1
    assert await calls.get_by_role("row").filter(has_text=billed.call_id).count() == 0
    assert await phone.get_by_role("link", name="Older calls").count() == 0
    assert await phone.get_by_role("region", name="Charges").get_by_role("row").count() == 2

    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.goto(f"{stack.url}/app/ops/contractors?id={cid}")
    looked_up = desk.get_by_role("region", name="Calls, billable and free")
    assert await looked_up.get_by_role("row").filter(has_text=free[0].call_id).count() == 1
    assert await looked_up.get_by_role("row").filter(has_text=billed.call_id).count() == 1
    # Billing's explanation speaks to the contractor; the operator reads the rule naming the contractor instead.
    billed_row = await looked_up.get_by_role("row").filter(has_text=billed.call_id).inner_text()
    assert "you" not in billed_row.lower().split() and cid in billed_row, billed_row
