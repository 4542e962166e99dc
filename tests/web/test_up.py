"""`callersync up` runs a mail sink and prints sign-in links; the app lists the mail in development: sign-in links
and low-balance alerts."""

import asyncio
import re
import signal

from services.runtime import stack_file
from tests.conftest import free_port
from tests.system.processes import Process, callersync_env
from tests.web.conftest import check
from tests.web.touch import assert_touch_targets


async def test_up_prints_links_that_sign_in_and_the_dev_mail_page_shows_new_links(browser, tmp_path):
    gateway_port = free_port()
    env = callersync_env(CALLERSYNC_WALLET_PORT=str(free_port()), CALLERSYNC_BILLING_PORT=str(free_port()),
                         CALLERSYNC_ROUTING_PORT=str(free_port()), CALLERSYNC_GATEWAY_PORT=str(gateway_port))
    up = Process("up", "--data-dir", str(tmp_path / "data"), env=env)
    context = await browser.new_context(viewport={"width": 375, "height": 812}, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    try:
        operator_line = await asyncio.to_thread(up.wait_for, "sign in as operator", 120)
        output = up.output()
        contractor_url = re.search(r"sign in as contractor demo-contractor \S+: (\S+)", output).group(1)
        operator_url = operator_line.split(": ")[-1].strip()
        assert f"http://127.0.0.1:{gateway_port}/app/" in output
        # The demo finds up's media folder here and writes its calls' recordings and transcripts into it.
        state = stack_file.read((tmp_path / "data").resolve())
        assert state is not None and state["media_dir"] == str((tmp_path / "data" / "media").resolve())

        await page.goto(operator_url)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"http://127.0.0.1:{gateway_port}/app/ops/")
        await page.get_by_role("button", name="Sign out").click()

        # A new link, asked for on the sign-in page, is read on the development mail page.
        await page.goto(f"http://127.0.0.1:{gateway_port}/app/signin")
        await page.get_by_label("Email address").fill("demo@callersync.local")
        await page.get_by_role("button", name="Email me a sign-in link").click()
        await page.get_by_text("a sign-in link is on its way").wait_for()
        await page.goto(f"http://127.0.0.1:{gateway_port}/app/dev/mail")
        await page.get_by_role("heading", name="Your CallerSync sign-in link").first.wait_for()
        await check(page, "dev-mail")
        await assert_touch_targets(page)
        fresh = page.locator("pre a[href*=\"/app/signin/\"]").first
        assert await fresh.get_attribute("href") != contractor_url
        await fresh.click()
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"http://127.0.0.1:{gateway_port}/app/c/demo-contractor/")
        # An alert above the demo's empty wallet sends its email at once; the wallet's email reaches the sink too.
        await page.goto(f"http://127.0.0.1:{gateway_port}/app/c/demo-contractor/money")
        await page.get_by_label("Alert me below (dollars; 0 turns it off)").fill("50")
        await page.get_by_role("button", name="Save alert").click()
        await page.get_by_text("Alert on below $50.00").wait_for()
        alert = page.get_by_role("heading", name="CallerSync: your wallet balance is below $50.00")
        for _ in range(60):
            await page.goto(f"http://127.0.0.1:{gateway_port}/app/dev/mail")
            if await alert.count():
                break
            await asyncio.sleep(0.5)
        assert await alert.count() == 1
        await check(page, "dev-mail-low-balance")
        # The link printed at start still works once, in another browser.
        other = await browser.new_context()
        try:
            second = await other.new_page()
            await second.goto(contractor_url)
            await second.get_by_role("button", name="Sign in").click()
            await second.wait_for_url(f"http://127.0.0.1:{gateway_port}/app/c/demo-contractor/")
        finally:
            await other.close()
    finally:
        await context.close()
        up.popen.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(up.popen.wait, 30)
        finally:
            up.kill()
