"""The flows of the issue, in a real browser: a billable call with its transcript, a refund requested by the
contractor and approved by an operator, the credit seen by the contractor; a paused contractor sees why and the
runway; a contractor's session opens no other contractor's page and no operator page."""

import csv
import io
import re

from tests.web.conftest import OPERATOR_EMAIL, ask_refund, assert_contractor_scope, check, sign_in
from tests.web.seed import balance, billable_call, claim, contractor_with_wallet


async def test_a_billable_call_is_refunded_after_an_operator_approves_it(stack, phone, desk):
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    assert decision.billable
    await sign_in(phone, stack, address)
    assert await phone.get_by_test_id("balance").inner_text() == "$155.00"

    await phone.get_by_role("link", name="Calls & charges").click()
    await phone.get_by_role("link", name=decision.call_id).first.click()
    await phone.wait_for_url(re.compile(f".*/calls/{decision.call_id}$"))
    assert "connected 47.0 s" in await phone.get_by_test_id("decision").inner_text()
    transcript = phone.get_by_test_id("transcript")
    assert await transcript.get_attribute("href") == f"/app/c/{cid}/calls/{decision.call_id}/transcript"
    assert "30 days left to ask for a refund" in await phone.content() or "29 days left" in await phone.content()
    assert await phone.get_by_test_id("refund-state").inner_text() == "✓ No refund requested".replace("✓", "•")
    await check(phone, "call-evidence")

    # The reason picker shows the policy before submitting.
    await phone.get_by_label(re.compile("Spam call that got through")).check()
    assert await phone.get_by_text("An operator reviews the recording and transcript").is_visible()
    await phone.get_by_label("What happened").fill("Robocall selling car warranties.")
    await phone.get_by_role("button", name=re.compile("Request a refund of \\$45.00")).click()
    await phone.wait_for_url(re.compile(".*#refund$"))
    assert "Waiting for review" in await phone.get_by_test_id("refund-state").inner_text()
    await check(phone, "refund-requested")

    await sign_in(desk, stack, OPERATOR_EMAIL)
    row = desk.get_by_role("row").filter(has_text=cid)
    await row.get_by_role("link", name="Review").click()
    assert "Robocall selling car warranties." in await desk.content()
    assert await desk.get_by_test_id("transcript").count() == 1
    await check(desk, "operator-case")
    await desk.get_by_role("radio", name=re.compile("^Approve")).check()
    await desk.get_by_label("Reason (the contractor reads this)").fill("Spam confirmed on the recording.")
    await desk.get_by_role("button", name="Record decision").click()
    await desk.get_by_test_id("case-state").get_by_text("Refunded").wait_for()

    assert await balance(stack, cid) == 20_000
    await phone.reload()
    state = await phone.get_by_test_id("refund-state").inner_text()
    assert "Refunded" in state
    assert "Spam confirmed on the recording." in await phone.content()
    await phone.get_by_role("link", name="Overview").click()
    assert await phone.get_by_test_id("balance").inner_text() == "$200.00"
    await phone.get_by_role("link", name="Ledger").click()
    assert await phone.locator("td[data-label=What]").get_by_text("Refund", exact=True).count() == 1
    await check(phone, "ledger-after-refund")


async def test_a_paused_contractor_sees_why_and_the_runway(stack, phone):
    cid, address = await contractor_with_wallet(stack, 10_000)
    cheap = await claim(stack, cid, 3000)
    dear = await claim(stack, cid, 6000)
    await billable_call(stack, cid, cheap)  # $100 - $30 = $70: above the $60 line, 1 day of spend recorded
    await sign_in(phone, stack, address)
    status = await phone.get_by_test_id("status").inner_text()
    assert "Receiving calls" in status
    assert f"the rate of ZIP {dear}" in await phone.content()
    # $30 over 14 days is $2.14 a day; $10 of headroom lasts about 4 days.
    assert await phone.get_by_test_id("runway").inner_text() == (
        "At your last 14 days' spend ($2.14 a day) you reach the pause line in about 4 days.")
    await billable_call(stack, cid, cheap)  # $40: below the $60 line
    await phone.reload()
    status = await phone.get_by_test_id("status").inner_text()
    assert "Paused: routing offers you no calls" in status
    assert "Your balance $40.00 is below your pause line $60.00" in status
    assert "Top up at least $20.00" in status
    assert "You are paused now" in await phone.get_by_test_id("runway").inner_text()
    await check(phone, "paused-overview")
    await phone.get_by_role("link", name="ZIPs").click()
    assert f"Release ZIP {dear} and your pause line falls from $60.00 to $30.00." in await phone.content()
    await check(phone, "zips")


async def test_a_contractors_session_opens_no_other_contractors_page_and_no_operator_page(stack, phone):
    cid, address = await contractor_with_wallet(stack)
    other, _ = await contractor_with_wallet(stack)
    await sign_in(phone, stack, address)
    for path in (f"/app/c/{other}/", f"/app/c/{other}/calls", f"/app/c/{other}/ledger", f"/app/c/{other}/zips",
                 f"/app/c/{other}/ledger.csv", "/app/ops/", "/app/ops/contractors?id=" + other, "/app/ops/rates",
                 "/app/ops/blocked"):
        reply = await phone.goto(stack.url + path)
        assert reply.status == 403, path
    await check(phone, "forbidden")


async def test_no_contractor_page_needs_operator_scope(stack, phone):
    """Every contractor page, rendered for a contractor, and every form it posts calls only API methods a
    contractor token reaches, and none of them is refused. The card forms and a top-up's page are in
    test_payments.py (they need the payment provider)."""
    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    await sign_in(phone, stack, address)
    stack.gateway.web.api_calls.clear()
    for path in ("/", "/calls", "/calls.csv", f"/calls/{decision.call_id}", f"/calls/{decision.call_id}/transcript",
                 "/ledger", "/ledger.csv", "/zips", "/money"):
        if path.endswith("/transcript"):
            # The transcript of this call is stored at s3://: the gateway redirects to a presigned URL.
            reply = await phone.request.get(f"{stack.url}/app/c/{cid}{path}", max_redirects=0)
            assert reply.status == 302, path
        elif path.endswith(".csv"):
            reply = await phone.request.get(f"{stack.url}/app/c/{cid}{path}")
            assert reply.status == 200, path
            rows = list(csv.reader(io.StringIO(await reply.text())))
            if path == "/calls.csv":
                assert [(r[1], r[2], r[5]) for r in rows[1:]] == [(decision.charge_id, decision.call_id, "45.00")]
            else:
                assert [(r[1], r[3]) for r in rows[1:]] == [(str(decision.wallet_entry_id), "-45.00"),
                                                            (rows[-1][1], "200.00")]
        else:
            reply = await phone.goto(f"{stack.url}/app/c/{cid}{path}")
            assert reply.status == 200, path
            await check(phone, "contractor" + path.replace("/", "-").rstrip("-") or "overview")
    await phone.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
    await ask_refund(phone, "Double bill")
    await phone.goto(f"{stack.url}/app/c/{cid}/money")
    await phone.get_by_role("button", name="Save auto top-up").click()
    await phone.wait_for_url(f"{stack.url}/app/c/{cid}/money")
    await phone.get_by_label("Alert me below (dollars; 0 turns it off)").fill("60")
    await phone.get_by_role("button", name="Save alert").click()
    await phone.get_by_text("Alert on below $60.00").wait_for()
    assert_contractor_scope(stack.gateway, {
        "contractor.overview", "contractor.calls", "contractor.calls_csv", "contractor.call", "contractor.call_media",
        "contractor.ledger", "contractor.ledger_csv", "contractor.zips", "contractor.money",
        "contractor.request_refund", "contractor.save_auto", "contractor.save_alert"})


async def test_an_ai_mode_contractor_sees_the_cost_per_booking_by_zip(stack, phone):
    import datetime as dt
    import uuid

    from callersync.billing.v1 import billing_pb2 as bpb
    from callersync.routing.v1 import routing_pb2 as rpb
    from tests.billing.calls import call, leg
    from tests.billing.support import at

    cid, address = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4000)
    await stack.routing.SetMode(rpb.SetModeRequest(contractor_id=cid, mode=rpb.CONTRACTOR_MODE_AI_AGENT))
    started = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    for _ in range(2):
        ai_call = call(leg(cid, 0.0, 240.0, 1.0, by=bpb.ANSWERED_BY_AI_AGENT, start=started), zip_code=zip_code,
                       start=started, mode=bpb.CALL_MODE_AI_AGENT)
        await stack.billing.RateCall(bpb.RateCallRequest(call=ai_call))
        await stack.billing.RecordBooking(bpb.RecordBookingRequest(
            booking_id=f"bk-{uuid.uuid4().hex[:8]}", call_id=ai_call.call_id, contractor_id=cid,
            scheduled_at=at(started + dt.timedelta(minutes=3))))
    await sign_in(phone, stack, address)
    await phone.get_by_role("link", name="ZIPs").click()
    costs = phone.get_by_role("region", name="Cost per booking by ZIP")
    row = await costs.get_by_role("row").filter(has_text=zip_code).inner_text()
    assert "2" in row and "$50.00" in row and "$25.00" in row
    await check(phone, "zips-ai")
