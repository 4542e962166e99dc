"""The overview with a month of activity (the README's screenshot, docs/img/overview.png, is this page)."""

import datetime as dt
import random

from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.wallet.test_spend_forecast import _age
from tests.web.conftest import SCREENSHOTS, check, sign_in
from tests.web.seed import billable_call, claim, contractor_with_wallet, five_minutes_ago, free_call


async def test_the_overview_draws_a_month_of_spend_and_the_runway(stack, browser, db):
    cid, address = await contractor_with_wallet(stack, 300_000)
    cheap = await claim(stack, cid, 3500)
    dear = await claim(stack, cid, 6500)
    rng = random.Random(17)
    billed, free, newest_free = {}, {}, None
    # Every call and every day looked up below counts back from one moment: midnight UTC may pass while the month
    # is seeded or the page is read, and a day's calls must all fall on the day that is checked.
    anchor = five_minutes_ago()
    for age in range(0, 28, 2):
        for _ in range(rng.randint(1, 3)):
            decision = await billable_call(stack, cid, rng.choice([cheap, dear]), days_ago=age, anchor=anchor)
            billed[age] = billed.get(age, 0) + 1
            if age:
                await _age(db, decision.wallet_entry_id, age)
        for _ in range(rng.randint(0, 2) if age else 1):
            called = (await free_call(stack, cid, cheap, days_ago=age, anchor=anchor)).call_id
            newest_free = newest_free or called
            free[age] = free.get(age, 0) + 1
    wallet = (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet
    context = await browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    try:
        await sign_in(page, stack, address)
        runway = await page.get_by_test_id("runway").inner_text()
        assert runway.startswith("At your last 14 days' spend (") and "you reach the pause line in about" in runway
        assert f"the rate of ZIP {dear}" in await page.content()
        # Billable and free calls per day, told apart by pattern and words as well as colour, and in the table.
        assert await page.locator("svg[role=img] rect.bar-billable").count() == len(billed)
        assert await page.locator("svg[role=img] rect.bar-free").count() == len(free)
        legend = await page.get_by_test_id("chart-legend").inner_text()
        assert "Billable calls (solid)" in legend and "Free calls (hatched)" in legend
        caption = await page.locator("#chart-summary").inner_text()
        assert f"{sum(billed.values())} billable calls costing" in caption
        assert f"and {sum(free.values())} free calls" in caption
        await page.get_by_text("Calls and spend per day as a table").click()
        days = page.get_by_role("table", name="Calls and spend per day")
        for age in (0, 2):
            day = (anchor - dt.timedelta(days=age)).date().isoformat()
            row = days.locator("tr", has=page.locator(f'td[data-label="Day"]:text-is("{day}")'))
            assert await row.locator('td[data-label="Billable calls"]').inner_text() == str(billed[age])
            assert await row.locator('td[data-label="Free calls"]').inner_text() == str(free.get(age, 0))
        # Recent calls: billable and free, newest first, each opening its evidence packet.
        recent = page.get_by_role("table", name="Recent calls, billable and free")
        assert await recent.locator("tbody tr").count() == 8
        decisions = await recent.locator('td[data-label="Decision"]').all_inner_texts()
        assert any("Free" in d for d in decisions) and any("Billable" in d for d in decisions)
        free_row = recent.locator("tr", has=page.locator(f'a:text-is("{newest_free}")'))
        assert "did not answer" in await free_row.locator('td[data-label="Why"]').inner_text()
        assert await free_row.locator('td[data-label="Charged"]').inner_text() == "$0.00"
        assert await page.get_by_test_id("balance").inner_text() == (
            f"${wallet.balance_cents // 100:,}.{wallet.balance_cents % 100:02d}")
        await check(page, "overview-month")
        await page.screenshot(path=str(SCREENSHOTS / "overview.png"))  # docs/img/overview.png is a copy
        await free_row.get_by_role("link", name=newest_free).click()
        await page.wait_for_url(f"**/calls/{newest_free}")
        assert await page.get_by_role("heading", level=1).inner_text() == f"Call {newest_free}"
        await check(page, "overview-free-call")
    finally:
        await context.close()
