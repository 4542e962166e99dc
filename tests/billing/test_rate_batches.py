"""RateCalls settles a whole batch with one SettleCalls: each call keeps its own outcome and its money moves once."""

import asyncio

from callersync.billing.v1 import billing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.billing.calls import call, connected, missed
from tests.billing.support import set_rate, unique_zip
from tests.wallet.support import ledger, top_up


async def reserve(wallet, contractor_id, call_id, cents):
    reply = await wallet.Reserve(wpb.ReserveRequest(contractor_id=contractor_id, call_id=call_id, amount_cents=cents))
    return reply.reservation.reservation_id


async def test_a_payer_without_a_wallet_fails_alone_and_stores_nothing(billing, wallet, db, contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 1500)
    await top_up(wallet, contractor, 10_000)
    paid, orphan = call(connected(contractor, 45.0), zip_code=zip_code), call(
        connected(contractor + "-nowallet", 45.0), zip_code=zip_code)
    reply = await billing.RateCalls(pb.RateCallsRequest(calls=[paid, orphan]))
    assert [(r.code, r.reason) for r in reply.results] == [(0, ""), (9, "NO_WALLET")]
    assert contractor + "-nowallet" in reply.results[1].message
    assert await db.fetchval("SELECT count(*) FROM billing.rated_calls WHERE call_id = $1", orphan.call_id) == 0
    assert await ledger(db, contractor) == (8500, 2, 8500)


async def test_concurrent_and_repeated_batches_settle_each_call_once(billing, wallet, db, contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 1000)
    payer, other = contractor, contractor + "-other"
    await top_up(wallet, payer, 50_000)
    await top_up(wallet, other, 50_000)
    calls = []
    for i in range(12):
        c = call(connected(payer, 45.0), zip_code=zip_code) if i % 2 else call(missed(payer), zip_code=zip_code)
        if i % 3:
            await reserve(wallet, payer, c.call_id, 1000)
            await reserve(wallet, other, c.call_id, 1000)
        calls.append(c)
    first = await billing.RateCall(pb.RateCallRequest(call=calls[1]))  # one already settled alone
    batches = [calls, list(reversed(calls)), calls[4:] + calls[:4], calls]
    replies = await asyncio.gather(*(billing.RateCalls(pb.RateCallsRequest(calls=b)) for b in batches))
    decisions = {}
    fresh = 0
    for reply in replies:
        for r in reply.results:
            assert r.code == 0, r.message
            assert decisions.setdefault(r.call_id, r.decision) == r.decision
            fresh += not r.replayed
    assert fresh == len(calls) - 1 and decisions[calls[1].call_id] == first.decision
    assert await ledger(db, payer) == (50_000 - 6 * 1000, 7, 50_000 - 6 * 1000)
    assert await ledger(db, other) == (50_000, 1, 50_000)
    assert await db.fetchval("SELECT count(*) FROM billing.charges WHERE contractor_id = $1", payer) == 6
    for c in calls:
        held = (await wallet.ListCallReservations(wpb.ListCallReservationsRequest(call_id=c.call_id))).reservations
        assert all(r.state in (wpb.RESERVATION_STATE_CAPTURED, wpb.RESERVATION_STATE_RELEASED) for r in held)


async def test_the_same_call_twice_in_a_batch_with_other_facts_is_refused_the_second_time(billing, wallet, db,
                                                                                           contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 1000)
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 45.0), zip_code=zip_code)
    other = pb.FinishedCall()
    other.CopyFrom(c)
    other.legs[0].ended_at.seconds += 60
    reply = await billing.RateCalls(pb.RateCallsRequest(calls=[c, other, c]))
    assert [(r.code, r.reason, r.replayed) for r in reply.results] == [
        (0, "", False), (6, "CALL_RATED_WITH_OTHER_FACTS", False), (0, "", True)]
    assert await ledger(db, contractor) == (9000, 2, 9000)
