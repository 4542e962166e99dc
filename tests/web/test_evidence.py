"""The evidence packet is one set of facts told to two readers: the contractor reads "you", the operator reviewing
their refund reads the contractor ids, and nothing else differs."""

import re

from callersync.billing.v1 import billing_pb2 as bpb
from tests.billing.calls import call, connected, missed
from tests.web.conftest import OPERATOR_EMAIL, ask_refund, check, sign_in
from tests.web.seed import claim, contractor_with_wallet, five_minutes_ago

NAMED = ("Who", "Who hung up", "Outcome")


async def _legs(page) -> list[dict[str, str]]:
    rows = page.get_by_role("region", name="Legs of the call").locator("tbody tr")
    legs = []
    for row in await rows.all():
        cells = row.locator("td")
        labels = [await c.get_attribute("data-label") for c in await cells.all()]
        legs.append(dict(zip(labels, await cells.all_inner_texts(), strict=True)))
    return legs


async def _packet_text(page) -> str:
    sections = page.locator("section[aria-labelledby=decision-h], section[aria-labelledby=evidence-h]")
    return " ".join(await sections.all_inner_texts())


async def test_the_operator_reads_the_contractors_id_where_the_contractor_reads_you(stack, phone, desk):
    cid, address = await contractor_with_wallet(stack, 20_000)
    other, _ = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    started = five_minutes_ago()
    # The other contractor missed the ring; ours answered and hung up after 47 s.
    finished = call(missed(other, start=started),
                    connected(cid, 47.0, answered=25.0, hangup=bpb.HANGUP_SIDE_CONTRACTOR, start=started),
                    zip_code=zip_code, start=started)
    decision = (await stack.billing.RateCall(bpb.RateCallRequest(call=finished))).decision
    assert decision.billable

    await sign_in(phone, stack, address)
    await phone.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
    theirs = await _legs(phone)
    their_decision = await phone.get_by_test_id("decision").inner_text()
    await ask_refund(phone)

    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("row").filter(has_text=cid).get_by_role("link", name="Review").click()
    ours = await _legs(desk)
    our_decision = await desk.get_by_test_id("decision").inner_text()
    await check(desk, "operator-evidence-named")

    # Same facts: every leg, every time, every figure.
    assert len(theirs) == len(ours) == 2
    for contractor_leg, operator_leg in zip(theirs, ours, strict=True):
        assert {k: v for k, v in contractor_leg.items() if k not in NAMED} == \
               {k: v for k, v in operator_leg.items() if k not in NAMED}
    # Different names: "you" for the contractor, ids for the operator.
    assert [leg["Who"] for leg in theirs] == ["Another contractor", "You"]
    assert [leg["Who"] for leg in ours] == [other, cid]
    assert theirs[1]["Who hung up"] == "you hung up" and ours[1]["Who hung up"] == f"{cid} hung up"
    assert theirs[0]["Outcome"] == "Free: another contractor missed the ring and the call moved on"
    assert ours[0]["Outcome"] == f"Free: {other} missed the ring and the call moved on"
    assert "and you were connected 30 seconds" in theirs[1]["Outcome"]
    assert f"and {cid} was connected 30 seconds" in ours[1]["Outcome"]
    assert their_decision.replace("you were", f"{cid} was") == our_decision
    assert "you were connected" in their_decision
    assert not re.search(r"\byou\b", await _packet_text(desk), re.I), await _packet_text(desk)
