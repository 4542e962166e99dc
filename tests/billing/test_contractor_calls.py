"""ListContractorCalls and GetContractorCallStats: every call that rang a contractor, billable or free, as it
concerns them, and their per-day counts (the dashboard's chart and "recent calls")."""

import datetime as dt

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from tests.billing.calls import call, connected, missed
from tests.billing.support import set_rate, unique_zip
from tests.wallet.support import expect_error, top_up


def _ids(reply: pb.ListContractorCallsResponse) -> list[str]:
    return [c.call_id for c in reply.calls]


async def _list(billing, cid: str, **kw) -> pb.ListContractorCallsResponse:
    return await billing.ListContractorCalls(pb.ListContractorCallsRequest(contractor_id=cid, **kw))


async def test_a_free_call_is_listed_for_the_contractor_it_rang_and_nobody_else(billing, contractor):
    other = f"{contractor}-other"
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    free = call(missed(contractor), zip_code=zip_code)
    short = call(connected(other, 12.0), zip_code=zip_code)
    for c in (free, short):
        await billing.RateCall(pb.RateCallRequest(call=c))
    mine = await _list(billing, contractor)
    assert _ids(mine) == [free.call_id]
    (listed,) = mine.calls
    assert (listed.billable, listed.payer, listed.charged_cents, listed.zip) == (False, False, 0, zip_code)
    assert listed.rule == pb.DECISION_RULE_FREE_NO_ANSWER
    assert listed.explanation == "Free for you: did not answer: free."
    assert listed.started_at == free.started_at
    theirs = await _list(billing, other)
    assert _ids(theirs) == [short.call_id]
    assert theirs.calls[0].rule == pb.DECISION_RULE_FREE_UNDER_30S
    assert theirs.calls[0].connected_ms == 12_000
    assert _ids(await _list(billing, f"{contractor}-never-rung")) == []


async def test_a_billable_call_is_the_payers_charge_and_free_for_the_primary_who_missed_it(
        billing, wallet, contractor):
    primary, payer = f"{contractor}-p", contractor
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    await top_up(wallet, payer, 10_000)
    finished = call(missed(primary), connected(payer, 45.0, answered=25.0), zip_code=zip_code)
    decision = (await billing.RateCall(pb.RateCallRequest(call=finished))).decision
    (paid,) = (await _list(billing, payer)).calls
    assert (paid.billable, paid.payer, paid.call_billable) == (True, True, True)
    assert (paid.charged_cents, paid.charge_id, paid.connected_ms) == (4500, decision.charge_id, 45_000)
    assert paid.rule == pb.DECISION_RULE_BILLABLE_CONNECTED_30S
    assert paid.explanation == "Billable: connected 45.000 s (30 s or more): billable; you paid $45.00."
    (spared,) = (await _list(billing, primary)).calls
    assert (spared.billable, spared.payer, spared.call_billable) == (False, False, True)
    assert (spared.charged_cents, spared.charge_id, spared.connected_ms) == (0, "", 0)
    assert spared.rule == pb.DECISION_RULE_FREE_CASCADED_PAST
    assert "Another contractor answered and paid for the call." in spared.explanation
    # Whatever the list shows, the call's evidence opens for that contractor (the page links there).
    for who in (payer, primary):
        await billing.ExplainCall(pb.ExplainCallRequest(call_id=finished.call_id, contractor_id=who))


async def test_pages_run_newest_first_without_gaps_or_repeats(billing, contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    start = dt.datetime(2024, 6, 1, 9, 0, tzinfo=dt.UTC)
    starts = [start + dt.timedelta(hours=h // 2) for h in range(7)]  # pairs share a start: the call id breaks ties
    calls = [call(missed(contractor, start=s), zip_code=zip_code, start=s) for s in starts]
    results = (await billing.RateCalls(pb.RateCallsRequest(calls=calls))).results
    assert [r.code for r in results] == [0] * 7, [r.message for r in results]
    expected = [c.call_id for c in sorted(calls, key=lambda c: (c.started_at.seconds, c.call_id), reverse=True)]
    seen, token, pages = [], "", 0
    while True:
        reply = await _list(billing, contractor, page_size=3, page_token=token)
        seen += _ids(reply)
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert (seen, pages) == (expected, 3)
    since = Timestamp()
    since.FromDatetime(start + dt.timedelta(hours=2))
    assert _ids(await _list(billing, contractor, since=since)) == expected[:3]
    err = await expect_error(_list(billing, contractor, page_token="not-a-token"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "page_token" in err.details()


async def test_the_day_summary_counts_billable_and_free_calls_per_utc_day(billing, wallet, contractor):
    primary = f"{contractor}-p"
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    await top_up(wallet, contractor, 20_000)
    # Today's call ended a moment ago (a call ending in the future is refused), whatever the time of day.
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)).replace(microsecond=0)
    today = recent.replace(hour=0, minute=0, second=0, microsecond=0)
    two_days_ago = today - dt.timedelta(days=2)
    ago2 = two_days_ago + dt.timedelta(hours=23)
    ago2b = two_days_ago + dt.timedelta(hours=1)
    ago9 = today - dt.timedelta(days=9)
    results = (await billing.RateCalls(pb.RateCallsRequest(calls=[
        call(missed(primary, start=recent), connected(contractor, 40.0, answered=25.0, start=recent),
             zip_code=zip_code, start=recent),
        call(connected(contractor, 50.0, start=ago2), zip_code=zip_code, start=ago2),
        call(missed(contractor, start=two_days_ago), zip_code=zip_code, start=two_days_ago),
        call(connected(contractor, 5.0, start=ago2b), zip_code=zip_code, start=ago2b),
        call(missed(contractor, start=ago9), zip_code=zip_code, start=ago9),  # outside 7 days
    ]))).results
    assert [r.code for r in results] == [0] * 5, [r.message for r in results]
    asked = dt.datetime.now(dt.UTC).date()
    days = (await billing.GetContractorCallStats(
        pb.GetContractorCallStatsRequest(contractor_id=contractor, days=7))).days
    # Billing's today, read from the reply: midnight may pass between its clock and ours.
    last = dt.date.fromisoformat(days[-1].date)
    assert asked <= last <= dt.datetime.now(dt.UTC).date()
    assert [d.date for d in days] == [(last - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
    counts = {d.date: (d.billable_calls, d.billable_cents, d.free_calls) for d in days if
              d.billable_calls or d.free_calls}
    assert counts == {today.date().isoformat(): (1, 4500, 0), two_days_ago.date().isoformat(): (1, 4500, 2)}
    primary_days = (await billing.GetContractorCallStats(
        pb.GetContractorCallStatsRequest(contractor_id=primary))).days
    assert len(primary_days) == 30
    assert [(d.billable_calls, d.free_calls) for d in primary_days if d.free_calls] == [(0, 1)]
    for bad in (-1, 367):
        err = await expect_error(billing.GetContractorCallStats(
            pb.GetContractorCallStatsRequest(contractor_id=contractor, days=bad)), grpc.StatusCode.INVALID_ARGUMENT)
        assert "days must be between 1 and 366" in err.details()
