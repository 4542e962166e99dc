"""RateCall end to end: decision stored, settled with the wallet exactly once, explained later."""

import asyncio

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.billing.calls import call, connected, missed
from tests.billing.support import set_rate, stream_events, unique_zip
from tests.wallet.support import balance, expect_error, ledger, top_up

R = pb.DecisionRule


async def reserve(wallet, contractor_id, call_id, cents):
    reply = await wallet.Reserve(wpb.ReserveRequest(contractor_id=contractor_id, call_id=call_id, amount_cents=cents))
    return reply.reservation.reservation_id


async def priced_zip(billing, cents=4500):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, cents)
    return zip_code


def contractors(contractor):
    return f"{contractor}-a", f"{contractor}-b"


async def test_billable_call_captures_the_payers_reservation_and_releases_the_others(billing, wallet, db, contractor):
    primary, backup = contractors(contractor)
    zip_code = await priced_zip(billing, 4500)
    c = call(missed(primary), connected(backup, 47.2, answered=25.0), zip_code=zip_code)
    for who in (primary, backup):
        await top_up(wallet, who, 10_000)
    held_primary = await reserve(wallet, primary, c.call_id, 4500)
    held_backup = await reserve(wallet, backup, c.call_id, 4500)
    c.legs[0].reservation_id, c.legs[1].reservation_id = held_primary, held_backup

    reply = await billing.RateCall(pb.RateCallRequest(call=c))
    d = reply.decision
    assert not reply.replayed
    assert (d.billable, d.payer_contractor_id, d.price_cents, d.rate_cents, d.leg_index, d.connected_ms) == (
        True, backup, 4500, 4500, 1, 47_200)
    assert d.rule == R.Value("DECISION_RULE_BILLABLE_CONNECTED_30S") and d.charge_id and d.wallet_entry_id
    reservations = {r.contractor_id: r for r in (await wallet.ListCallReservations(
        wpb.ListCallReservationsRequest(call_id=c.call_id))).reservations}
    assert reservations[backup].state == wpb.RESERVATION_STATE_CAPTURED
    assert reservations[backup].capture_entry_id == d.wallet_entry_id
    assert reservations[primary].state == wpb.RESERVATION_STATE_RELEASED
    assert await ledger(db, backup) == (5500, 2, 5500)
    assert await ledger(db, primary) == (10_000, 1, 10_000)


async def test_free_call_releases_every_reservation_and_moves_no_money(billing, wallet, db, contractor):
    zip_code = await priced_zip(billing)
    c = call(connected(contractor, 12.0), zip_code=zip_code)
    await top_up(wallet, contractor, 10_000)
    c.legs[0].reservation_id = await reserve(wallet, contractor, c.call_id, 4500)
    d = (await billing.RateCall(pb.RateCallRequest(call=c))).decision
    assert (d.billable, d.rule, d.price_cents, d.charge_id, d.wallet_entry_id) == (
        False, R.Value("DECISION_RULE_FREE_UNDER_30S"), 0, "", 0)
    assert d.rate_cents == 4500
    assert (await balance(wallet, contractor)).available_cents == 10_000
    assert await ledger(db, contractor) == (10_000, 1, 10_000)


async def test_resending_the_same_call_returns_the_stored_decision_and_moves_no_money(billing, wallet, db, contractor):
    zip_code = await priced_zip(billing)
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 60.0), zip_code=zip_code)
    c.legs[0].reservation_id = await reserve(wallet, contractor, c.call_id, 4500)
    first = await billing.RateCall(pb.RateCallRequest(call=c))
    again = await billing.RateCall(pb.RateCallRequest(call=c))
    assert again.replayed and again.decision == first.decision
    assert await ledger(db, contractor) == (5500, 2, 5500)


async def test_the_same_call_id_with_other_facts_is_refused_not_rerated(billing, wallet, db, contractor):
    zip_code = await priced_zip(billing)
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 20.0), zip_code=zip_code)
    await billing.RateCall(pb.RateCallRequest(call=c))
    other = pb.FinishedCall()
    other.CopyFrom(c)
    other.legs[0].ended_at.seconds += 60
    err = await expect_error(billing.RateCall(pb.RateCallRequest(call=other)), grpc.StatusCode.ALREADY_EXISTS)
    assert c.call_id in err.details() and "other facts" in err.details()
    explained = await billing.ExplainCall(pb.ExplainCallRequest(call_id=c.call_id))
    assert not explained.decision.billable
    assert await ledger(db, contractor) == (10_000, 1, 10_000)


async def test_twenty_concurrent_sends_make_one_decision_and_one_charge(billing, wallet, db, contractor):
    zip_code = await priced_zip(billing, 3000)
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 45.0), zip_code=zip_code)
    c.legs[0].reservation_id = await reserve(wallet, contractor, c.call_id, 3000)
    replies = await asyncio.gather(*(billing.RateCall(pb.RateCallRequest(call=c)) for _ in range(20)))
    assert len({r.decision.SerializeToString(deterministic=True) for r in replies}) == 1
    assert sum(not r.replayed for r in replies) == 1
    assert await ledger(db, contractor) == (7000, 2, 7000)
    assert await db.fetchval("SELECT count(*) FROM billing.charges WHERE call_id = $1", c.call_id) == 1


async def test_a_call_without_a_reservation_is_charged_by_its_call_id(billing, wallet, db, contractor):
    zip_code = await priced_zip(billing, 4000)
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 45.0), zip_code=zip_code)
    d = (await billing.RateCall(pb.RateCallRequest(call=c))).decision
    entries = (await wallet.ListEntries(wpb.ListEntriesRequest(contractor_id=contractor))).entries
    assert entries[0].entry_id == d.wallet_entry_id
    assert (entries[0].kind, entries[0].amount_cents, entries[0].idempotency_key) == (
        wpb.ENTRY_KIND_CHARGE, -4000, f"call:{c.call_id}")


async def test_a_payer_without_a_wallet_is_refused_by_name_and_nothing_is_written(billing, db, contractor):
    zip_code = await priced_zip(billing)
    c = call(connected(contractor, 45.0), zip_code=zip_code)
    err = await expect_error(billing.RateCall(pb.RateCallRequest(call=c)), grpc.StatusCode.FAILED_PRECONDITION)
    assert contractor in err.details()
    assert await db.fetchval("SELECT count(*) FROM billing.rated_calls WHERE call_id = $1", c.call_id) == 0


async def test_a_zip_without_a_rate_is_refused_and_nothing_is_written(billing, db, wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 45.0), zip_code=unique_zip())
    err = await expect_error(billing.RateCall(pb.RateCallRequest(call=c)), grpc.StatusCode.FAILED_PRECONDITION)
    assert "SetZipRate" in err.details()
    assert await db.fetchval("SELECT count(*) FROM billing.rated_calls WHERE call_id = $1", c.call_id) == 0


async def test_inconsistent_input_is_invalid_and_writes_nothing(billing, db, contractor):
    zip_code = await priced_zip(billing)
    c = call(connected(contractor, 45.0), zip_code=zip_code)
    c.legs[0].ended_at.seconds = c.legs[0].rang_at.seconds - 5
    err = await expect_error(billing.RateCall(pb.RateCallRequest(call=c)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "legs[0].ended_at" in err.details()
    assert await db.fetchval("SELECT count(*) FROM billing.rated_calls WHERE call_id = $1", c.call_id) == 0


async def test_old_calls_keep_their_old_price_and_a_rate_cannot_reprice_a_rated_call(billing, wallet, contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4000, "2024-01-01T00:00:00+00:00")
    await set_rate(billing, zip_code, 6000, "2024-04-01T00:00:00+00:00")
    await top_up(wallet, contractor, 10_000)
    c = call(connected(contractor, 45.0), zip_code=zip_code)  # started 2024-03-05
    d = (await billing.RateCall(pb.RateCallRequest(call=c))).decision
    assert (d.price_cents, d.rate_effective_from.ToJsonString()) == (4000, "2024-01-01T00:00:00Z")
    err = await expect_error(set_rate(billing, zip_code, 5000, "2024-03-01T00:00:00+00:00"),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert "already billed" in err.details()


async def test_ai_mode_call_is_free_and_says_so(billing, wallet, contractor):
    zip_code = await priced_zip(billing)
    c = call(connected(contractor, 300.0, by=pb.ANSWERED_BY_AI_AGENT), zip_code=zip_code, mode=pb.CALL_MODE_AI_AGENT)
    d = (await billing.RateCall(pb.RateCallRequest(call=c))).decision
    assert (d.billable, d.rule) == (False, R.Value("DECISION_RULE_FREE_AI_MODE"))
    assert "AI agent mode" in d.explanation


async def test_a_batch_gives_each_call_its_own_status(billing, wallet, db, contractor):
    zip_code = await priced_zip(billing, 2000)
    await top_up(wallet, contractor, 10_000)
    good = call(connected(contractor, 45.0), zip_code=zip_code)
    free = call(missed(contractor), zip_code=zip_code)
    unpriced = call(connected(contractor, 45.0), zip_code=unique_zip())
    broken = call(connected(contractor, 45.0), zip_code=zip_code)
    broken.legs[0].answered_at.seconds = broken.legs[0].rang_at.seconds - 1
    reply = await billing.RateCalls(pb.RateCallsRequest(calls=[good, free, unpriced, broken, good]))
    codes = [(r.call_id, r.code) for r in reply.results]
    assert codes == [(good.call_id, 0), (free.call_id, 0), (unpriced.call_id, 9), (broken.call_id, 3),
                     (good.call_id, 0)]
    assert reply.results[2].reason == "ZIP_NOT_PRICED" and reply.results[2].message
    assert reply.results[0].decision.billable and reply.results[4].decision == reply.results[0].decision
    assert await ledger(db, contractor) == (8000, 2, 8000)
    # The answer is built from the rows as sent, not read back: it must be what the database stored.
    for r in reply.results[:2]:
        assert (await billing.ExplainCall(pb.ExplainCallRequest(call_id=r.call_id))).decision == r.decision


async def test_explain_and_list_charges_show_the_decision_and_its_evidence(billing, wallet, contractor):
    zip_code = await priced_zip(billing, 4500)
    await top_up(wallet, contractor, 10_000)
    c = call(missed("someone-else"), connected(contractor, 47.2, answered=25.0), zip_code=zip_code)
    d = (await billing.RateCall(pb.RateCallRequest(call=c))).decision
    explained = await billing.ExplainCall(pb.ExplainCallRequest(call_id=c.call_id))
    assert explained.call == c and explained.decision == d
    assert [ch.charge_id for ch in explained.charges] == [d.charge_id]
    assert f"{contractor} pays $45.00" in explained.explanation and "47.200 s" in explained.explanation
    charges = (await billing.ListCharges(pb.ListChargesRequest(contractor_id=contractor))).charges
    assert [ch.charge_id for ch in charges] == [d.charge_id]
    ch = charges[0]
    assert (ch.kind, ch.amount_cents, ch.zip, ch.wallet_entry_id) == (pb.CHARGE_KIND_CALL, 4500, zip_code,
                                                                       d.wallet_entry_id)
    assert ch.evidence.recording_uri == c.recording.uri and ch.evidence.transcript_uri == c.transcript_uri
    assert ch.decision == d and not ch.HasField("refund")
    await expect_error(billing.ExplainCall(pb.ExplainCallRequest(call_id="never-seen")), grpc.StatusCode.NOT_FOUND)


async def test_list_charges_pages_newest_first(billing, wallet, contractor):
    zip_code = await priced_zip(billing, 1000)
    await top_up(wallet, contractor, 10_000)
    ids = []
    for _ in range(5):
        ids.append((await billing.RateCall(pb.RateCallRequest(call=call(connected(contractor, 45.0),
                                                                        zip_code=zip_code)))).decision.charge_id)
    seen, token = [], ""
    while True:
        page = await billing.ListCharges(pb.ListChargesRequest(contractor_id=contractor, page_size=2, page_token=token))
        seen += [ch.charge_id for ch in page.charges]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))


async def test_a_rated_call_is_published_for_routing(billing, wallet, redis_client, contractor):
    zip_code = await priced_zip(billing, 4500)
    await top_up(wallet, contractor, 10_000)
    c = call(missed("primary-x"), connected(contractor, 45.0, answered=25.0), zip_code=zip_code)
    await billing.RateCall(pb.RateCallRequest(call=c))
    found = await stream_events(redis_client, lambda e: e.WhichOneof("event") == "call_rated"
                                and e.call_rated.call_id == c.call_id)
    rated = found[0].call_rated
    assert (rated.billable, rated.payer_contractor_id, rated.price_cents, list(rated.rung_contractor_ids)) == (
        True, contractor, 4500, ["primary-x", contractor])
