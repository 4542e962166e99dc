"""Every page at a 375 px phone width: axe-core finds no serious or critical violation and every control is a
44 x 44 px target. Contractor pages from the sign-in form to the error pages, then the operator console."""

import uuid

from tests.web.conftest import OPERATOR_EMAIL, ask_refund, check, emailed_link, sign_in
from tests.web.seed import billable_call, claim, contractor_with_wallet
from tests.web.touch import assert_touch_targets


async def _checked(page, name: str) -> None:
    await check(page, f"phone-{name}")
    await assert_touch_targets(page)


async def test_every_contractor_page_on_a_phone_has_44px_targets_and_no_serious_axe_violation(stack, phone):
    cid, address = await contractor_with_wallet(stack, 20_000)
    other, _ = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)

    seen = len(stack.smtp.to(address))
    await phone.goto(f"{stack.url}/app/signin")
    await _checked(phone, "signin-form")
    await phone.get_by_label("Email address").fill(address)
    await phone.get_by_role("button", name="Email me a sign-in link").click()
    await phone.get_by_text("a sign-in link is on its way").wait_for()
    assert await phone.get_by_role("heading", level=1).inner_text() == "Check your email"
    await _checked(phone, "signin-check-email")
    link = await emailed_link(stack.smtp, address, seen)
    await phone.goto(link)
    assert f"to contractor {cid}" in await phone.content()
    await _checked(phone, "signin-confirm")
    await phone.get_by_role("button", name="Sign in").click()
    await phone.wait_for_url(f"{stack.url}/app/c/{cid}/")
    await _checked(phone, "overview")

    base = f"{stack.url}/app/c/{cid}"
    for path in ("/calls", f"/calls/{decision.call_id}", "/ledger", "/zips", "/money"):
        reply = await phone.goto(base + path)
        assert reply.status == 200, path
        await _checked(phone, path.strip("/").replace("/", "-").replace(decision.call_id, "call"))
    await phone.goto(f"{base}/calls/{decision.call_id}")
    await ask_refund(phone)
    await _checked(phone, "call-refund-waiting")

    reply = await phone.goto(f"{base}/calls/no-such-call")
    assert reply.status == 404
    await _checked(phone, "not-found")
    reply = await phone.goto(f"{stack.url}/app/c/{other}/")
    assert reply.status == 403
    await _checked(phone, "not-your-account")
    reply = await phone.goto(link)
    assert reply.status == 410
    await _checked(phone, "signin-link-used")


async def test_every_operator_page_on_a_phone_has_44px_targets_and_no_serious_axe_violation(stack, phone, desk):
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    await sign_in(desk, stack, address)
    await desk.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
    await ask_refund(desk)

    await sign_in(phone, stack, OPERATOR_EMAIL)
    await _checked(phone, "operator-queue")
    await phone.get_by_role("row").filter(has_text=cid).get_by_role("link", name="Review").click()
    await _checked(phone, "operator-case")
    await phone.get_by_role("radio", name="Reject").check()
    await phone.get_by_label("Reason (the contractor reads this)").fill("The recording shows a real customer.")
    await phone.get_by_role("button", name="Record decision").click()
    await phone.get_by_test_id("case-state").get_by_text("Declined by an operator").wait_for()
    await _checked(phone, "operator-case-resolved")

    for path, name in (("/app/ops/contractors", "operator-lookup-empty"),
                       (f"/app/ops/contractors?id={cid}", "operator-lookup"),
                       ("/app/ops/rates", "operator-rates"),
                       (f"/app/ops/rates?zip={zip_code}&rate=60", "operator-rate-preview"),
                       ("/app/ops/blocked", "operator-blocked")):
        reply = await phone.goto(stack.url + path)
        assert reply.status == 200, path
        await _checked(phone, name)

    reply = await phone.goto(f"{stack.url}/app/ops/rates?zip={zip_code}&rate=sixty")
    assert reply.status == 400
    await _checked(phone, "bad-request")
    # A contractor id with no wallet: its dashboard says so (the operator may open any contractor's pages).
    reply = await phone.goto(f"{stack.url}/app/c/ctr-none-{uuid.uuid4().hex[:8]}/")
    assert reply.status == 200
    assert "You have no wallet yet" in await phone.content()
    await _checked(phone, "no-wallet")
