"""callersync.billing.events as routing consumes them: at least once, applied once, resumed after a restart
without loss, a dead consumer's pending entries taken over; and what each event does to routing."""

import datetime as dt

import grpc
import pytest

from callersync.billing.v1 import billing_pb2, billing_pb2_grpc, events_pb2
from callersync.routing.v1 import routing_pb2 as pb
from services.routing.billing_events import BillingEventHandler
from services.routing.clients import BillingClient
from services.routing.directory import Directory
from services.routing.live_state import LiveState
from services.routing.rate_card import RateCard
from services.routing.storage import RoutingStore
from services.routing.streams import StreamConsumer
from tests.routing.support import (
    caller,
    capped_primary_and_backup,
    claim,
    contractors,
    eventually,
    get_wallet,
    new_call,
    next_event_id,
    price,
    publish,
    rate_event,
    route,
    top_up,
    ts,
)


@pytest.fixture
def stream(redis_client):
    """A stream of its own: the session's routing server does not read it."""
    return f"test.billing.events.{next_event_id()}"


@pytest.fixture
def live(redis_client, redis_pipe) -> LiveState:
    return LiveState(redis_client, redis_pipe, burst_window_s=60, session_ttl_s=60, slot_ttl_s=60)


def consumer(live, pool, stream, name, handler=None, claim_idle_ms=60_000):
    handler = handler or BillingEventHandler(RoutingStore(pool), live, Directory(RoutingStore(pool)), lambda: None)
    return StreamConsumer(live.redis, stream, "routing", handler, consumer=name, claim_idle_ms=claim_idle_ms)


async def rates(pool):
    return {r["zip"]: r["rate_cents"] for r in await pool.fetch("SELECT zip, rate_cents FROM routing.zip_rates")}


async def test_events_published_while_routing_is_down_are_consumed_after_the_restart(
        redis_client, live, isolated, stream):
    first = consumer(live, isolated, stream, "replica-a")
    for i in range(3):
        await publish(redis_client, rate_event(f"1000{i}", 1000 + i), stream)
    assert await first.drain() == 3
    # routing is down; billing keeps publishing
    for i in range(3, 6):
        await publish(redis_client, rate_event(f"1000{i}", 1000 + i), stream)
    restarted = consumer(live, isolated, stream, "replica-a-restarted")
    assert await restarted.drain() == 3
    assert await rates(isolated) == {f"1000{i}": 1000 + i for i in range(6)}


async def test_a_consumer_that_died_before_acknowledging_is_taken_over_and_nothing_applies_twice(
        redis_client, live, isolated, stream):
    store = RoutingStore(isolated)
    real = BillingEventHandler(store, live, Directory(store), lambda: None)

    async def apply_then_die(entries):
        await real(entries)
        raise RuntimeError("killed between commit and XACK")

    dying = consumer(live, isolated, stream, "replica-dying", handler=apply_then_die)
    rated = events_pb2.BillingEvent(call_rated=events_pb2.CallRated(
        call_id=new_call(), zip="20001", billable=True, payer_contractor_id="ctr-x", connected_ms=45_000,
        price_cents=4000, started_at=ts(dt.datetime.now(dt.UTC))))
    await publish(redis_client, rate_event("20001", 4000), stream)
    await publish(redis_client, rated, stream)
    with pytest.raises(RuntimeError):
        await dying.poll_once()
    pending = await redis_client.xpending(stream, "routing")
    assert pending["pending"] == 2
    heir = consumer(live, isolated, stream, "replica-heir", claim_idle_ms=0)
    assert await heir.drain() == 2
    assert (await redis_client.xpending(stream, "routing"))["pending"] == 0
    assert await isolated.fetchval("SELECT count(*) FROM routing.connected_calls WHERE contractor_id = 'ctr-x'") == 1
    assert await isolated.fetchval("SELECT count(*) FROM routing.consumed_events") == 2


async def test_entries_a_failed_handler_left_pending_are_retried_on_the_next_poll(redis_client, live, isolated, stream):
    """Recovery of pending entries runs only now and then, except right after a failure: PostgreSQL back from
    a blip must not leave a rate change waiting for the next recovery round (half claim_idle_ms)."""
    store = RoutingStore(isolated)
    real = BillingEventHandler(store, live, Directory(store), lambda: None)
    failures = [RuntimeError("PostgreSQL restarting")]

    async def flaky(entries):
        if failures:
            raise failures.pop()
        await real(entries)

    flickering = consumer(live, isolated, stream, "replica-flicker", handler=flaky)
    await flickering.poll_once()  # the first poll recovers (nothing yet): the next would not, unprompted
    await publish(redis_client, rate_event("40404", 2200), stream)
    with pytest.raises(RuntimeError):
        await flickering.poll_once()
    assert await flickering.poll_once() == 1
    assert await rates(isolated) == {"40404": 2200}
    assert (await redis_client.xpending(stream, "routing"))["pending"] == 0


async def test_a_redelivered_event_is_applied_once(redis_client, live, isolated, stream):
    block = events_pb2.BillingEvent(event_id=next_event_id(), caller_block_requested=events_pb2.CallerBlockRequested(
        caller_number="+14155550199", refund_case_id="rc-1", contractor_id="ctr-y", call_id="c-1", reviewer="ops"))
    await publish(redis_client, block, stream)
    await publish(redis_client, block, stream)  # the relay crashed before marking it published: sent again
    assert await consumer(live, isolated, stream, "replica-b").drain() == 2
    assert await isolated.fetchval("SELECT count(*) FROM routing.blocklist_history") == 1
    row = await isolated.fetchrow("SELECT * FROM routing.blocked_callers")
    assert (row["source"], row["refund_case_id"]) == ("spam_refund", "rc-1")


async def test_an_entry_routing_cannot_read_is_set_aside_and_the_rest_applied(redis_client, live, isolated, stream):
    await redis_client.xadd(stream, {"event_id": 1, "type": "zip_rate_changed", "data": b"\xff\xffnot a proto"})
    await publish(redis_client, rate_event("123", 1000), stream)  # not a ZIP
    await publish(redis_client, rate_event("30303", 1500), stream)
    assert await consumer(live, isolated, stream, "replica-c").drain() == 3
    assert await rates(isolated) == {"30303": 1500}
    assert await isolated.fetchval("SELECT count(*) FROM routing.rejected_events") == 2


async def test_an_approved_spam_refund_blocks_the_caller_for_routing(routing, wallet, redis_client, db, zip_code,
                                                                     make_zip):
    cid, = contractors(1)
    nobodys = make_zip()  # polled until the block applies, so the polls themselves reserve nothing
    await price(redis_client, db, zip_code, 3000)
    await claim(routing, cid, zip_code)
    await top_up(wallet, cid, 10000)
    spammer = caller()
    await publish(redis_client, events_pb2.BillingEvent(caller_block_requested=events_pb2.CallerBlockRequested(
        caller_number=spammer, refund_case_id="rc-7", contractor_id=cid, call_id="c-7", reviewer="ops-bo")))

    async def blocked():
        return (await route(routing, nobodys, spammer)).outcome == pb.ROUTE_OUTCOME_CALLER_BLOCKED

    await eventually(blocked, what="the caller to be blocked")
    assert (await route(routing, zip_code, spammer)).outcome == pb.ROUTE_OUTCOME_CALLER_BLOCKED
    assert (await get_wallet(wallet, cid)).reserved_cents == 0
    entry = (await routing.ListBlockedCallers(pb.ListBlockedCallersRequest(page_size=500))).blocked_callers
    assert [(b.source, b.refund_case_id) for b in entry if b.caller_number == spammer] == [
        (pb.BLOCK_SOURCE_SPAM_REFUND, "rc-7")]


async def test_rated_calls_count_against_the_daily_cap_and_free_the_slot(routing, wallet, redis_client, db, zip_code):
    primary, backup = await capped_primary_and_backup(routing, wallet, redis_client, db, zip_code)
    offered = await route(routing, zip_code)
    assert offered.candidate.contractor_id == primary
    await publish(redis_client, events_pb2.BillingEvent(call_rated=events_pb2.CallRated(
        call_id=new_call(), zip=zip_code, billable=True,
        payer_contractor_id=primary, connected_ms=60_000, price_cents=3000,
        started_at=ts(dt.datetime.now(dt.UTC)), rung_contractor_ids=[primary])))

    async def capped():
        reply = await route(routing, zip_code)
        return reply.skipped and reply.skipped[0].reason == pb.SKIP_REASON_DAILY_CAP and reply

    reply = await eventually(capped, what="the daily cap to apply")
    assert reply.candidate.contractor_id == backup
    assert "1 of 1" in reply.skipped[0].message
    profile = (await routing.GetRoutingProfile(pb.GetRoutingProfileRequest(contractor_id=primary))).profile
    assert (profile.connected_calls_today, profile.caps.daily_max_connected_calls) == (1, 1)


async def test_a_rate_set_in_billing_reaches_the_wallet_threshold_through_the_stream(
        routing, wallet, billing_target, redis_client, db, zip_code, contractor):
    async with grpc.aio.insecure_channel(billing_target) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        now = dt.datetime.now(dt.UTC)
        await billing.SetZipRate(billing_pb2.SetZipRateRequest(zip=zip_code, rate_cents=3300,
                                                               effective_from=ts(now), set_by="ops"))
        # Routing may not have heard the event yet: ClaimZip falls back to GetRateCard.
        assert (await claim(routing, contractor, zip_code)).pause_threshold_cents == 3300
        await billing.SetZipRate(billing_pb2.SetZipRateRequest(
            zip=zip_code, rate_cents=5100, effective_from=ts(now + dt.timedelta(seconds=1)), set_by="ops"))

    async def raised():
        return (await get_wallet(wallet, contractor)).pause_threshold_cents == 5100

    await eventually(raised, what="the new rate's threshold at the wallet")


async def test_a_consumer_group_created_anew_re_reads_billing_s_whole_rate_card(
        redis_client, live, isolated, stream, billing_target, zip_code):
    """Redis lost the stream (FLUSHALL, an empty failover replica): the events it held are gone, so routing reads
    billing's card again, and the contractors of every ZIP whose rate it lacked get their threshold pushed."""
    async with grpc.aio.insecure_channel(billing_target) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        await billing.SetZipRate(billing_pb2.SetZipRateRequest(
            zip=zip_code, rate_cents=3700, effective_from=ts(dt.datetime.now(dt.UTC)), set_by="ops"))
        await isolated.execute("INSERT INTO routing.claims (zip, contractor_id, position, backup_rank)"
                               " VALUES ($1, 'ctr-lost-event', 'primary', 0)", zip_code)
        resyncs = []
        rate_card = RateCard(RoutingStore(isolated), BillingClient(billing, timeout_s=2.0),
                             on_resync=lambda: _note(resyncs))
        created = []

        def group_created():
            created.append(stream)
            rate_card.start_resync()

        first = StreamConsumer(redis_client, stream, "routing", BillingEventHandler(
            RoutingStore(isolated), live,
            Directory(RoutingStore(isolated)), lambda: None), consumer="replica-new", on_group_created=group_created)
        await first.poll_once()
        assert await rate_card.resynced() >= 1 and resyncs == [1]
        assert (await rates(isolated))[zip_code] == 3700
        causes = await isolated.fetch(
            "SELECT cause FROM routing.threshold_outbox WHERE contractor_id = 'ctr-lost-event'")
        assert [r["cause"] for r in causes] == [f"re-read from billing (rate of {zip_code})"]
        # The group exists now: another replica joining it re-reads nothing; a second re-read changes nothing.
        second = consumer(live, isolated, stream, "replica-other")
        second._on_group_created = group_created
        await second.poll_once()
        assert created == [stream]
        assert await rate_card.resync_all() == 0
        assert await isolated.fetchval(
            "SELECT count(*) FROM routing.threshold_outbox WHERE contractor_id = 'ctr-lost-event'") == 1


async def _note(calls: list) -> None:
    calls.append(1)
