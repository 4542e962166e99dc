"""Sign-in by emailed one-time link, the session cookie, CSRF and sign-out, in a real browser."""

import http.cookies

import aiohttp

from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.web.conftest import OPERATOR_EMAIL, check, emailed_link, sign_in
from tests.web.seed import contractor_with_wallet


async def test_a_contractor_signs_in_by_the_emailed_link_once_and_signs_out(stack, phone):
    cid, address = await contractor_with_wallet(stack)
    await sign_in(phone, stack, address)
    assert phone.url == f"{stack.url}/app/c/{cid}/"
    assert await phone.get_by_test_id("balance").inner_text() == "$200.00"
    await check(phone, "signin-overview")
    cookies = {c["name"]: c for c in await phone.context.cookies()}
    session = cookies["cs_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert not session["secure"], "plain-HTTP loopback: a Secure cookie would never come back"

    await phone.get_by_role("button", name="Sign out").click()
    await phone.wait_for_url(f"{stack.url}/app/signin")
    # Sign-out revoked the session server-side: the old cookie, replayed, opens nothing.
    async with aiohttp.ClientSession(cookies={"cs_session": session["value"]}) as http:
        async with http.get(f"{stack.url}/app/c/{cid}/", allow_redirects=False) as reply:
            assert reply.status == 303 and reply.headers["Location"].startswith("/app/signin")


async def test_a_link_works_once(stack, phone, desk):
    cid, address = await contractor_with_wallet(stack)
    seen = len(stack.smtp.to(address))
    await phone.goto(f"{stack.url}/app/signin")
    await phone.get_by_label("Email address").fill(address)
    await phone.get_by_role("button", name="Email me a sign-in link").click()
    await phone.get_by_text("a sign-in link is on its way").wait_for()
    link = await emailed_link(stack.smtp, address, seen)
    await phone.goto(link)
    await phone.get_by_role("button", name="Sign in").click()
    await phone.wait_for_url(f"{stack.url}/app/c/{cid}/")
    reply = await desk.goto(link)
    assert reply.status == 410
    assert "used already or has expired" in await desk.content()
    await check(desk, "signin-link-used")


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(stack, phone):
    address = "nobody-at-all@example.com"
    await phone.goto(f"{stack.url}/app/signin")
    await check(phone, "signin-form")
    await phone.get_by_label("Email address").fill(address)
    await phone.get_by_role("button", name="Email me a sign-in link").click()
    await phone.get_by_text("a sign-in link is on its way").wait_for()
    assert stack.smtp.to(address) == []


async def test_an_operator_signs_in_to_the_console(stack, desk):
    await sign_in(desk, stack, OPERATOR_EMAIL)
    assert desk.url == f"{stack.url}/app/ops/"
    await check(desk, "operator-queue")


async def test_a_post_without_the_sessions_csrf_token_is_refused(stack, phone):
    cid, address = await contractor_with_wallet(stack)
    await sign_in(phone, stack, address)
    session = {c["name"]: c["value"] for c in await phone.context.cookies()}["cs_session"]
    async with aiohttp.ClientSession(cookies={"cs_session": session}) as http:
        async with http.post(f"{stack.url}/app/c/{cid}/money/alert", data={"threshold": "50", "csrf": "forged"},
                             allow_redirects=False) as reply:
            assert reply.status == 403
        async with http.post(f"{stack.url}/app/signout", data={}, allow_redirects=False) as reply:
            assert reply.status == 403
    # Still signed in: the forged sign-out did nothing.
    await phone.reload()
    assert await phone.get_by_test_id("balance").inner_text() == "$200.00"


def _set_cookies(reply) -> dict:
    jar = http.cookies.SimpleCookie()
    for header in reply.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar)


async def test_the_session_cookie_is_secure_outside_loopback(stack):
    """Behind a proxy at a real host name the browser speaks HTTPS: the cookies are Secure there."""
    import re

    from services.gateway.tokens import Principal

    cid, address = await contractor_with_wallet(stack)
    link_token = await stack.gateway.web.sessions.issue_link(Principal(address, "contractor", cid))
    host = "app.callersync.example"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url}/app/signin/{link_token}", headers={"Host": host}) as reply:
            assert reply.status == 200
            signin_csrf = _set_cookies(reply)["cs_signin_csrf"]
            form_csrf = re.search(r'name="csrf" value="([^"]+)"', await reply.text()).group(1)
        assert signin_csrf["secure"] and signin_csrf["httponly"]
        async with http.post(f"{stack.url}/app/signin/{link_token}", data={"csrf": form_csrf}, allow_redirects=False,
                             headers={"Host": host, "Origin": f"https://{host}",
                                      "Cookie": f"cs_signin_csrf={signin_csrf.value}"}) as reply:
            assert reply.status == 303 and reply.headers["Location"] == f"/app/c/{cid}/"
            session = _set_cookies(reply)["cs_session"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Strict"
    assert session["path"] == "/app"


async def test_a_post_from_another_site_is_refused_even_with_the_sessions_token(stack, phone):
    cid, address = await contractor_with_wallet(stack)
    await sign_in(phone, stack, address)
    await phone.goto(f"{stack.url}/app/c/{cid}/money")
    csrf = await phone.locator("form[action$='/money/alert'] input[name=csrf]").get_attribute("value")
    session = {c["name"]: c["value"] for c in await phone.context.cookies()}["cs_session"]
    form = {"threshold": "50", "email": address, "csrf": csrf}
    async with aiohttp.ClientSession(cookies={"cs_session": session}) as http:
        async with http.post(f"{stack.url}/app/c/{cid}/money/alert", data=form, allow_redirects=False,
                             headers={"Origin": "https://evil.example"}) as reply:
            assert reply.status == 403
            assert "came from another site" in await reply.text()
        alert = (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet.low_balance_alert
        assert alert.threshold_cents == 0
        # The same form from the app's own origin goes through: the Origin alone made the difference.
        async with http.post(f"{stack.url}/app/c/{cid}/money/alert", data=form, allow_redirects=False,
                             headers={"Origin": stack.url}) as reply:
            assert reply.status == 303
    alert = (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet.low_balance_alert
    assert alert.threshold_cents == 5000


def test_operators_are_the_addresses_in_callersync_operator_emails():
    from services.gateway.web.config import WebConfig

    config = WebConfig.from_env({"CALLERSYNC_OPERATOR_EMAILS": " Ops@CallerSync.test, second@example.com ,,"})
    assert config.operator_emails == frozenset({"ops@callersync.test", "second@example.com"})
    assert WebConfig.from_env({}).operator_emails == frozenset()


async def test_an_address_from_callersync_operator_emails_signs_in_to_the_console(stack, desk, monkeypatch):
    """The gateway reads its operators from the environment when it is given no WebConfig (as in production)."""
    import dataclasses

    from services.gateway.app import Gateway

    monkeypatch.setenv("CALLERSYNC_OPERATOR_EMAILS", "Boss@CallerSync.test")
    gateway = Gateway(dataclasses.replace(stack.gateway.settings), targets=stack.gateway.targets)
    port = await gateway.start(0)
    try:
        site = dataclasses.replace(stack, url=f"http://127.0.0.1:{port}", gateway=gateway)
        await sign_in(desk, site, "boss@callersync.test")
        assert desk.url == f"{site.url}/app/ops/"
    finally:
        await gateway.stop(1)
