"""The rate card editor lists scheduled rates, and its "who would pause" preview reads pause lines at the moment
a rate would take effect, with the AI booking-fee floor; the blocklist page unblocks a caller."""

import datetime as dt
import random

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.routing.v1 import routing_pb2 as rpb
from services.gateway.web.render import money, when
from tests.billing.support import set_rate
from tests.web.conftest import OPERATOR_EMAIL, check, sign_in
from tests.web.seed import claim, contractor_with_wallet


def _local(moment: dt.datetime) -> str:
    """What a datetime-local field holds."""
    return moment.strftime("%Y-%m-%dT%H:%M")


async def _preview(desk, stack, zip_code: str, dollars: str, moment: dt.datetime | None = None):
    await desk.goto(f"{stack.url}/app/ops/rates")
    await desk.locator("#pzip").fill(zip_code)
    await desk.get_by_label("New rate (dollars)").fill(dollars)
    if moment is not None:
        await desk.locator("#pfrom").fill(_local(moment))
    await desk.get_by_role("button", name="Show who would pause").click()
    await desk.wait_for_url(f"**/app/ops/rates?zip={zip_code}*")
    return desk.get_by_role("region", name="Who would pause")


async def test_a_future_rate_is_previewed_at_its_date_against_the_rates_then(stack, desk):
    cid, _ = await contractor_with_wallet(stack, 5000)
    previewed = await claim(stack, cid, 3000)
    other = await claim(stack, cid, 4000)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=5)).replace(second=0, microsecond=0)
    later = soon + dt.timedelta(days=5)
    await set_rate(stack.billing, other, 7000, effective_from=soon.isoformat())

    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("link", name="Rate card").click()
    scheduled = desk.get_by_role("region", name="Scheduled rates")
    row = await scheduled.get_by_role("row").filter(has_text=other).inner_text()
    assert "$70.00" in row and when(soon.isoformat()) in row

    # Now: the other ZIP costs $40, so a $45 rate sets the line at $45, under the $50 balance.
    table = await _preview(desk, stack, previewed, "45")
    assert "Keeps receiving calls" in await table.get_by_role("row").filter(has_text=cid).inner_text()
    # From `later` on, the other ZIP's scheduled $70 sets the line.
    table = await _preview(desk, stack, previewed, "45", later)
    assert f"A scheduled change: the rate in effect now stays until {when(later.isoformat())}" in \
        await desk.get_by_test_id("preview-when").inner_text()
    row = await table.get_by_role("row").filter(has_text=cid).inner_text()
    assert f"Would pause from {when(later.isoformat())} ($50.00 below $70.00)" in row
    await check(desk, "operator-rate-preview-future")


async def test_an_ai_mode_contractors_pause_line_never_falls_below_the_booking_fee(stack, desk):
    ai, _ = await contractor_with_wallet(stack, 10_000)
    human, _ = await contractor_with_wallet(stack, 10_000)
    zip_code = await claim(stack, ai, 3000)
    await stack.routing.SetMode(rpb.SetModeRequest(contractor_id=ai, mode=rpb.CONTRACTOR_MODE_AI_AGENT))
    await stack.routing.ClaimZip(rpb.ClaimZipRequest(contractor_id=human, zip=zip_code,
                                                     position=rpb.CLAIM_POSITION_BACKUP))
    fee = (await stack.billing.GetRateCard(bpb.GetRateCardRequest(page_size=1))).booking_fee.fee_cents
    assert fee > 50
    await sign_in(desk, stack, OPERATOR_EMAIL)
    table = await _preview(desk, stack, zip_code, "0.50")
    assert f"{money(fee)} (the AI booking fee)" in await table.get_by_role("row").filter(has_text=ai).inner_text()
    assert "$0.50" in await table.get_by_role("row").filter(has_text=human).inner_text()


async def test_an_operator_unblocks_a_caller_and_is_recorded_as_who_did(stack, desk, db):
    number = f"+1415555{random.randrange(1000, 10_000)}"
    await stack.routing.BlockCaller(rpb.BlockCallerRequest(caller_number=number, blocked_by="ops@test",
                                                           note="robocaller"))
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("link", name="Blocked callers").click()
    blocked = desk.get_by_role("region", name="Blocked callers")
    assert await blocked.get_by_role("row").filter(has_text=number).count() == 1
    await check(desk, "operator-blocked")
    await desk.get_by_role("button", name=f"Unblock {number}").click()
    await desk.wait_for_url(f"{stack.url}/app/ops/blocked")
    assert await desk.get_by_role("row").filter(has_text=number).count() == 0
    listed = await stack.routing.ListBlockedCallers(rpb.ListBlockedCallersRequest(page_size=500))
    assert number not in {b.caller_number for b in listed.blocked_callers}
    actor = await db.fetchval("SELECT actor FROM routing.blocklist_history WHERE caller_number = $1"
                              " AND action = 'unblock'", number)
    assert actor == OPERATOR_EMAIL
