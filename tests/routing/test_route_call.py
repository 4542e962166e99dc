"""RouteCall and NextCandidate against the real wallet: cascade order, skips with their reasons, the
blocklist, reservations held, released and expiring, and never more offers than a balance covers."""

import asyncio
import datetime as dt

import grpc

from callersync.routing.v1 import routing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.routing.support import caller, claim, contractors, eventually, get_wallet, new_call, price, route, top_up
from tests.wallet.support import expect_error

BACKUP = pb.CLAIM_POSITION_BACKUP


async def cascade_of(routing, wallet, redis_client, db, zip_code, n, rate=4000, balance=10000):
    ids = contractors(n)
    await price(redis_client, db, zip_code, rate)
    for i, cid in enumerate(ids):
        await claim(routing, cid, zip_code, pb.CLAIM_POSITION_PRIMARY if i == 0 else BACKUP)
        if balance:
            await top_up(wallet, cid, balance)
    return ids


async def test_the_primary_is_offered_first_holding_a_reservation_of_the_rate(routing, wallet, redis_client, db,
                                                                              zip_code):
    primary, backup = await cascade_of(routing, wallet, redis_client, db, zip_code, 2)
    reply = await route(routing, zip_code)
    assert reply.outcome == pb.ROUTE_OUTCOME_OFFERED
    offer = reply.candidate
    assert (offer.contractor_id, offer.position, offer.step, offer.reserved_cents) == (
        primary, pb.CLAIM_POSITION_PRIMARY, 1, 4000)
    assert offer.ring_timeout_s > 0 and not reply.skipped
    assert (await get_wallet(wallet, primary)).reserved_cents == 4000
    assert (await get_wallet(wallet, backup)).reserved_cents == 0


async def test_next_candidate_releases_the_previous_hold_and_walks_the_cascade_in_order(routing, wallet, redis_client,
                                                                                        db, zip_code):
    ids = await cascade_of(routing, wallet, redis_client, db, zip_code, 3)
    call_id = new_call()
    first = await route(routing, zip_code, call_id=call_id)
    offered = [first.candidate.contractor_id]
    step = 1
    while True:
        reply = await routing.NextCandidate(pb.NextCandidateRequest(call_id=call_id, after_step=step,
                                                                    ring_outcome=pb.RING_OUTCOME_NO_ANSWER))
        if reply.outcome != pb.ROUTE_OUTCOME_OFFERED:
            break
        step = reply.candidate.step
        offered.append(reply.candidate.contractor_id)
        assert (await get_wallet(wallet, offered[-2])).reserved_cents == 0  # the one passed over is free again
        assert (await get_wallet(wallet, offered[-1])).reserved_cents == 4000
    assert offered == ids
    assert reply.outcome == pb.ROUTE_OUTCOME_NO_CANDIDATE
    assert [(await get_wallet(wallet, c)).reserved_cents for c in ids] == [0, 0, 0]
    # A repeat of an earlier step gets the answer it got then and moves nothing.
    again = await routing.NextCandidate(pb.NextCandidateRequest(call_id=call_id, after_step=1))
    assert again.candidate.contractor_id == ids[1] and again.candidate.step == 2


async def test_a_repeated_route_call_returns_the_first_answer_and_reserves_nothing_more(routing, wallet, redis_client,
                                                                                       db, zip_code):
    primary, = await cascade_of(routing, wallet, redis_client, db, zip_code, 1)
    call_id, number = new_call(), caller()
    first = await route(routing, zip_code, number, call_id)
    second = await route(routing, zip_code, number, call_id)
    assert first == second
    assert (await get_wallet(wallet, primary)).reserved_cents == 4000


async def test_a_paused_contractor_is_skipped_and_resumes_after_a_top_up_with_claims_untouched(
        routing, wallet, redis_client, db, zip_code):
    primary, backup = await cascade_of(routing, wallet, redis_client, db, zip_code, 2, rate=4000, balance=0)
    await top_up(wallet, primary, 2500)  # below the 4000 threshold: paused
    await top_up(wallet, backup, 10000)
    assert (await get_wallet(wallet, primary)).paused
    reply = await route(routing, zip_code)
    assert reply.candidate.contractor_id == backup
    assert [(s.contractor_id, s.reason) for s in reply.skipped] == [(primary, pb.SKIP_REASON_PAUSED)]
    assert "threshold $40.00" in reply.skipped[0].message
    claims_before = await routing.ListClaims(pb.ListClaimsRequest(zip=zip_code))
    await top_up(wallet, primary, 2500)
    assert not (await get_wallet(wallet, primary)).paused
    resumed = await route(routing, zip_code)
    assert resumed.candidate.contractor_id == primary and not resumed.skipped
    assert await routing.ListClaims(pb.ListClaimsRequest(zip=zip_code)) == claims_before


async def test_unaffordable_and_walletless_contractors_are_skipped_with_their_reason(routing, wallet, redis_client,
                                                                                    db, zip_code):
    no_wallet, short, rich = await cascade_of(routing, wallet, redis_client, db, zip_code, 3, rate=4000, balance=0)
    await wallet.SetPauseThreshold(wpb.SetPauseThresholdRequest(contractor_id=short, threshold_cents=0))
    await top_up(wallet, short, 5000)
    await wallet.Reserve(wpb.ReserveRequest(contractor_id=short, call_id=new_call(), amount_cents=2000))
    await top_up(wallet, rich, 10000)
    # ClaimZip created no_wallet's wallet (SetPauseThreshold creates it): take it out of the picture again.
    await db.execute("DELETE FROM wallet.outbox WHERE payload->>'contractor_id' = $1", no_wallet)
    await db.execute("DELETE FROM wallet.wallets WHERE contractor_id = $1", no_wallet)
    reply = await route(routing, zip_code)
    assert reply.candidate.contractor_id == rich
    reasons = [(s.contractor_id, s.reason) for s in reply.skipped]
    assert reasons == [(no_wallet, pb.SKIP_REASON_NO_WALLET), (short, pb.SKIP_REASON_UNAFFORDABLE)]


async def test_a_contractor_outside_their_hours_is_skipped_with_that_reason(routing, wallet, redis_client, db,
                                                                            zip_code):
    primary, backup = await cascade_of(routing, wallet, redis_client, db, zip_code, 2)
    # Hours only three days from today (UTC): the route below runs today, or tomorrow when midnight passes first.
    elsewhen = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoweekday()
    await routing.SetSchedule(pb.SetScheduleRequest(contractor_id=primary, time_zone="UTC", weekly_hours=[
        pb.WeeklyHours(day=elsewhen, start_minute=0, end_minute=1440)]))
    reply = await route(routing, zip_code)
    assert reply.candidate.contractor_id == backup
    assert [(s.contractor_id, s.reason) for s in reply.skipped] == [(primary, pb.SKIP_REASON_OUTSIDE_HOURS)]
    await routing.SetSchedule(pb.SetScheduleRequest(contractor_id=primary, time_zone="America/Chicago"))
    assert (await route(routing, zip_code)).candidate.contractor_id == primary  # no hours: any hour


async def test_a_person_already_ringing_is_busy_and_a_concurrency_cap_says_so(routing, wallet, redis_client, db,
                                                                              zip_code):
    primary, backup = await cascade_of(routing, wallet, redis_client, db, zip_code, 2)
    assert (await route(routing, zip_code)).candidate.contractor_id == primary
    second = await route(routing, zip_code)
    assert second.candidate.contractor_id == backup
    assert [(s.contractor_id, s.reason) for s in second.skipped] == [(primary, pb.SKIP_REASON_BUSY)]
    await routing.SetCaps(pb.SetCapsRequest(contractor_id=primary, caps=pb.Caps(max_concurrent_calls=2)))
    assert (await route(routing, zip_code)).candidate.contractor_id == primary
    capped = await route(routing, zip_code)
    assert capped.outcome == pb.ROUTE_OUTCOME_NO_CANDIDATE
    assert [(s.contractor_id, s.reason) for s in capped.skipped] == [
        (primary, pb.SKIP_REASON_CONCURRENCY_CAP), (backup, pb.SKIP_REASON_BUSY)]


async def test_a_blocked_caller_is_never_routed_and_nothing_is_reserved(routing, wallet, redis_client, db, zip_code):
    primary, = await cascade_of(routing, wallet, redis_client, db, zip_code, 1)
    spammer = caller()
    blocked = await routing.BlockCaller(pb.BlockCallerRequest(caller_number=spammer, blocked_by="ops-ann",
                                                              note="robocalls"))
    assert blocked.blocked_caller.source == pb.BLOCK_SOURCE_OPERATOR
    reply = await route(routing, zip_code, spammer)
    assert reply.outcome == pb.ROUTE_OUTCOME_CALLER_BLOCKED and not reply.HasField("candidate")
    assert (await get_wallet(wallet, primary)).reserved_cents == 0
    listed = await routing.ListBlockedCallers(pb.ListBlockedCallersRequest(page_size=500))
    assert spammer in [b.caller_number for b in listed.blocked_callers]
    await routing.UnblockCaller(pb.UnblockCallerRequest(caller_number=spammer, unblocked_by="ops-ann"))
    assert (await route(routing, zip_code, spammer)).outcome == pb.ROUTE_OUTCOME_OFFERED


async def test_a_caller_over_the_burst_rate_is_refused_without_ringing_anyone(routing, wallet, redis_client, db,
                                                                             zip_code):
    await cascade_of(routing, wallet, redis_client, db, zip_code, 1, balance=100_000)
    await routing.SetCaps(pb.SetCapsRequest(contractor_id=(await routing.ListClaims(
        pb.ListClaimsRequest(zip=zip_code))).claims[0].contractor_id, caps=pb.Caps(max_concurrent_calls=50)))
    number = caller()
    outcomes = [(await route(routing, zip_code, number)).outcome for _ in range(7)]
    assert outcomes == [pb.ROUTE_OUTCOME_OFFERED] * 5 + [pb.ROUTE_OUTCOME_CALLER_RATE_LIMITED] * 2


async def test_100_concurrent_calls_to_a_contractor_with_balance_for_3_get_exactly_3_offers(
        routing, wallet, redis_client, db, zip_code):
    only, = await cascade_of(routing, wallet, redis_client, db, zip_code, 1, rate=3000, balance=9500)
    await routing.SetCaps(pb.SetCapsRequest(contractor_id=only, caps=pb.Caps(max_concurrent_calls=1000)))
    replies = await asyncio.gather(*(route(routing, zip_code) for _ in range(100)))
    offers = [r for r in replies if r.outcome == pb.ROUTE_OUTCOME_OFFERED]
    assert len(offers) == 3
    assert {r.skipped[0].reason for r in replies if r.outcome != pb.ROUTE_OUTCOME_OFFERED} == {
        pb.SKIP_REASON_UNAFFORDABLE}
    held = await get_wallet(wallet, only)
    assert held.reserved_cents == 9000 <= held.balance_cents


async def test_a_reservation_expires_by_itself_and_frees_the_balance(routing_settings, wallet, redis_client, db,
                                                                     zip_code):
    import dataclasses

    from callersync.routing.v1 import routing_pb2_grpc
    from services.routing.app import build
    from tests.routing.conftest import CONFIG

    server = await build(routing_settings, 0, dataclasses.replace(CONFIG, reservation_ttl_s=1))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            short_lived = routing_pb2_grpc.RoutingServiceStub(channel)
            only, = await cascade_of(short_lived, wallet, redis_client, db, zip_code, 1, rate=4000, balance=5000)
            await short_lived.SetMode(pb.SetModeRequest(contractor_id=only, mode=pb.CONTRACTOR_MODE_AI_AGENT))
            first = await route(short_lived, zip_code)
            assert first.outcome == pb.ROUTE_OUTCOME_OFFERED
            assert (await route(short_lived, zip_code)).skipped[0].reason == pb.SKIP_REASON_UNAFFORDABLE

            async def freed():
                return (await get_wallet(wallet, only)).reserved_cents == 0

            await eventually(freed, timeout_s=5, what="the reservation to lapse")
            assert (await route(short_lived, zip_code)).outcome == pb.ROUTE_OUTCOME_OFFERED
    finally:
        await server.stop(1)


async def test_bad_input_gets_a_clear_status_and_changes_nothing(routing, wallet, redis_client, db, zip_code):
    primary, = await cascade_of(routing, wallet, redis_client, db, zip_code, 1)
    for request in (pb.RouteCallRequest(call_id=new_call(), zip="9021", caller_number=caller()),
                    pb.RouteCallRequest(call_id=new_call(), zip=zip_code, caller_number="4155550123"),
                    pb.RouteCallRequest(call_id=new_call(), zip=zip_code, caller_number="+1415555O123"),
                    pb.RouteCallRequest(call_id="", zip=zip_code, caller_number=caller())):
        err = await expect_error(routing.RouteCall(request), grpc.StatusCode.INVALID_ARGUMENT)
        assert "zip" in err.details() or "E.164" in err.details() or "call_id" in err.details()
    await expect_error(routing.BlockCaller(pb.BlockCallerRequest(caller_number="555-0100", blocked_by="ops")),
                       grpc.StatusCode.INVALID_ARGUMENT)
    err = await expect_error(routing.NextCandidate(pb.NextCandidateRequest(call_id="never-routed", after_step=1)),
                             grpc.StatusCode.NOT_FOUND)
    assert "RouteCall" in err.details()
    assert (await get_wallet(wallet, primary)).reserved_cents == 0
    assert await db.fetchval("SELECT count(*) FROM routing.blocked_callers WHERE caller_number = '555-0100'") == 0


async def test_missed_calls_show_who_was_skipped_or_not_answering_and_why(routing, wallet, redis_client, db,
                                                                          zip_code):
    primary, backup = await cascade_of(routing, wallet, redis_client, db, zip_code, 2, balance=0)
    await top_up(wallet, primary, 2500)  # paused: skipped on the first call
    await top_up(wallet, backup, 10000)
    call_id = new_call()
    first = await route(routing, zip_code, call_id=call_id)
    assert first.candidate.contractor_id == backup
    await routing.NextCandidate(pb.NextCandidateRequest(call_id=call_id, after_step=1,
                                                        ring_outcome=pb.RING_OUTCOME_VOICEMAIL))

    async def missed(contractor_id):
        reply = await routing.ListMissedCalls(pb.ListMissedCallsRequest(contractor_id=contractor_id))
        return reply.missed_calls

    paused = (await eventually(lambda: missed(primary), what="the skip in ListMissedCalls"))[0]
    assert (paused.call_id, paused.skip_reason, paused.rate_cents) == (call_id, pb.SKIP_REASON_PAUSED, 4000)
    assert "paused" in paused.message
    rung = (await eventually(lambda: missed(backup), what="the unanswered ring"))[0]
    assert (rung.call_id, rung.ring_outcome, rung.position) == (call_id, pb.RING_OUTCOME_VOICEMAIL, BACKUP)
