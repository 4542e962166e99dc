"""The overview with a month of activity (the README's screenshot, docs/img/overview.png, is this page)."""

import random

from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.wallet.test_spend_forecast import _age
from tests.web.conftest import SCREENSHOTS, check, sign_in
from tests.web.seed import billable_call, claim, contractor_with_wallet


async def test_the_overview_draws_a_month_of_spend_and_the_runway(stack, browser, db):
    cid, address = await contractor_with_wallet(stack, 300_000)
    cheap = await claim(stack, cid, 3500)
    dear = await claim(stack, cid, 6500)
    rng = random.Random(17)
    for age in range(0, 28, 2):
        for _ in range(rng.randint(1, 3)):
            decision = await billable_call(stack, cid, rng.choice([cheap, dear]))
            if age:
                await _age(db, decision.wallet_entry_id, age)
    wallet = (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet
    context = await browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    try:
        await sign_in(page, stack, address)
        runway = await page.get_by_test_id("runway").inner_text()
        assert runway.startswith("At your last 14 days' spend (") and "you reach the pause line in about" in runway
        assert f"the rate of ZIP {dear}" in await page.content()
        assert await page.locator("svg rect.bar").count() >= 10
        assert await page.get_by_test_id("balance").inner_text() == (
            f"${wallet.balance_cents // 100:,}.{wallet.balance_cents % 100:02d}")
        await check(page, "overview-month")
        await page.screenshot(path=str(SCREENSHOTS / "overview.png"))  # docs/img/overview.png is a copy
    finally:
        await context.close()
