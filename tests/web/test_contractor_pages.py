"""Contractor pages that work without a flow of their own in test_flows.py: the ledger's paging and CSV, the
available balance while a call rings, the low-balance alert, the ZIPs page's caps and missed calls."""

import csv
import io
import re
import uuid

from callersync.routing.v1 import routing_pb2 as rpb
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.gateway.web.contractor_pages import PAGE_SIZE
from tests.wallet.support import top_up
from tests.web.conftest import check, sign_in
from tests.web.seed import claim, contractor_with_wallet


async def _entries(stack, cid: str) -> list[wpb.LedgerEntry]:
    """The whole ledger, newest first, as the wallet lists it."""
    entries, token = [], ""
    while True:
        reply = await stack.wallet.ListEntries(wpb.ListEntriesRequest(contractor_id=cid, page_size=500,
                                                                      page_token=token))
        entries += reply.entries
        token = reply.next_page_token
        if not token:
            return entries


async def test_the_ledger_pages_back_to_the_oldest_entry_and_its_csv_is_the_ledger(stack, phone):
    cid, address = await contractor_with_wallet(stack, 10_000)
    for n in range(PAGE_SIZE + 2):
        await top_up(stack.wallet, cid, 2500 + n)
    entries = await _entries(stack, cid)
    assert len(entries) == PAGE_SIZE + 3
    oldest = 'td[data-label="Balance after"]:text-is("$100.00")'  # the first top-up, $100
    assert entries[-1].balance_after_cents == 10_000

    await sign_in(phone, stack, address)
    await phone.get_by_role("link", name="Ledger").click()
    ledger = phone.get_by_role("region", name="Ledger")
    assert await ledger.locator("tbody tr").count() == PAGE_SIZE
    assert await ledger.locator(oldest).count() == 0
    await phone.get_by_role("link", name="Older entries").click()
    await phone.wait_for_url(re.compile(".*/ledger\\?page_token=.+"))
    assert await ledger.locator("tbody tr").count() == 3
    assert await ledger.locator(oldest).count() == 1
    assert await phone.get_by_role("link", name="Older entries").count() == 0
    await check(phone, "ledger-older-page")

    reply = await phone.request.get(f"{stack.url}/app/c/{cid}/ledger.csv")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(await reply.text())))
    assert rows[0] == ["created_at", "entry_id", "kind", "amount_usd", "balance_after_usd", "reference",
                       "description"]
    assert [(int(r[1]), r[2], r[3], r[4], r[5]) for r in rows[1:]] == [
        (e.entry_id, "Top-up", f"{e.amount_cents // 100}.{e.amount_cents % 100:02d}",
         f"{e.balance_after_cents // 100}.{e.balance_after_cents % 100:02d}", e.reference) for e in entries]


async def test_available_is_the_balance_less_the_hold_of_a_call_ringing_now(stack, phone):
    cid, address = await contractor_with_wallet(stack, 20_000)
    await stack.wallet.Reserve(wpb.ReserveRequest(contractor_id=cid, call_id=f"call-{uuid.uuid4().hex[:8]}",
                                                  amount_cents=4500))
    await sign_in(phone, stack, address)
    assert await phone.get_by_test_id("balance").inner_text() == "$200.00"
    assert await phone.get_by_test_id("available").inner_text() == "$155.00"
    assert "Balance minus $45.00 held for calls ringing now." in await phone.content()
    await check(phone, "overview-call-ringing")


async def test_a_contractor_saves_the_low_balance_alert(stack, phone):
    cid, address = await contractor_with_wallet(stack, 20_000)
    await sign_in(phone, stack, address)
    await phone.get_by_role("link", name="Money").click()
    assert "No low-balance alert" in await phone.content()
    await phone.get_by_label("Alert me below (dollars; 0 turns it off)").fill("75")
    await phone.get_by_label("Email", exact=True).fill("office@example.com")
    await phone.get_by_role("button", name="Save alert").click()
    await phone.get_by_text("Alert on below $75.00").wait_for()
    alert = (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet.low_balance_alert
    assert (alert.threshold_cents, alert.email, alert.armed) == (7500, "office@example.com", True)
    assert await phone.get_by_label("Alert me below (dollars; 0 turns it off)").input_value() == "75"
    await check(phone, "money-alert-saved")


async def test_the_zips_page_shows_the_caps_and_why_calls_were_missed(stack, phone):
    cid, address = await contractor_with_wallet(stack, 3000)
    zip_code = await claim(stack, cid, 4500)  # $30 below a $45 line: paused, so routing passes them over
    await stack.routing.SetCaps(rpb.SetCapsRequest(contractor_id=cid, caps=rpb.Caps(
        daily_max_connected_calls=5, monthly_max_connected_calls=90, max_concurrent_calls=2)))
    caller = f"+1415{uuid.uuid4().int % 10_000_000:07d}"  # other tests block callers of their own on this stack
    routed = await stack.routing.RouteCall(rpb.RouteCallRequest(call_id=f"call-{uuid.uuid4().hex[:8]}", zip=zip_code,
                                                                caller_number=caller))
    assert [s.contractor_id for s in routed.skipped] == [cid], routed
    await sign_in(phone, stack, address)
    await phone.get_by_role("link", name="ZIPs").click()
    assert "per day: 5, per month: 90, at once: 2" in await phone.content()
    missed = phone.get_by_role("region", name="Missed calls")
    row = missed.get_by_role("row").filter(has_text=zip_code)
    assert await row.count() == 1
    why = await row.locator('td[data-label="Why"]').inner_text()
    assert "paused" in why and "$30.00" in why and "$45.00" in why, why
    assert await row.locator('td[data-label="Rate"]').inner_text() == "$45.00"
    await check(phone, "zips-missed-and-caps")
