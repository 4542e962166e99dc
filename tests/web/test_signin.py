"""Sign-in by emailed one-time link, the session cookie, CSRF and sign-out, in a real browser."""

import aiohttp

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
