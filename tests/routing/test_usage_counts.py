"""Caps hold whatever Redis loses: connected-call counts are a cache of routing's own record in PostgreSQL,
read back (and refilled) when Redis no longer has them (FLUSHALL, eviction of keys with a TTL)."""

import datetime as dt

from callersync.billing.v1 import events_pb2
from callersync.routing.v1 import routing_pb2 as pb
from tests.routing.support import (
    capped_primary_and_backup,
    claim,
    contractors,
    eventually,
    new_call,
    price,
    publish,
    route,
    top_up,
    ts,
)


async def _usage_keys(redis_client, contractor_id: str) -> dict[bytes, bytes]:
    keys = [k async for k in redis_client.scan_iter(f"routing:usage:{contractor_id}:*")]
    return dict(zip(keys, await redis_client.mget(keys), strict=True)) if keys else {}


async def test_a_daily_cap_still_holds_after_redis_lost_the_counts(routing, wallet, redis_client, db, zip_code):
    primary, backup = await capped_primary_and_backup(routing, wallet, redis_client, db, zip_code)
    await publish(redis_client, events_pb2.BillingEvent(call_rated=events_pb2.CallRated(
        call_id=new_call(), zip=zip_code, billable=True, payer_contractor_id=primary, connected_ms=60_000,
        price_cents=3000, started_at=ts(dt.datetime.now(dt.UTC)), rung_contractor_ids=[primary])))

    async def capped():
        reply = await route(routing, zip_code)
        return reply.skipped and reply.skipped[0].reason == pb.SKIP_REASON_DAILY_CAP and reply

    await eventually(capped, what="the daily cap to apply")
    counts = await _usage_keys(redis_client, primary)
    assert sorted(counts.values()) == [b"1", b"1"]  # today and this month
    await redis_client.delete(*counts)  # as FLUSHALL or an eviction would

    reply = await route(routing, zip_code)
    assert reply.candidate.contractor_id == backup
    assert reply.skipped[0].contractor_id == primary and reply.skipped[0].reason == pb.SKIP_REASON_DAILY_CAP
    assert "1 of 1" in reply.skipped[0].message
    assert await _usage_keys(redis_client, primary) == counts  # refilled from PostgreSQL


async def test_a_contractor_without_caps_costs_no_count(routing, wallet, redis_client, db, zip_code):
    [cid] = contractors(1)
    await price(redis_client, db, zip_code, 3000)
    await claim(routing, cid, zip_code)
    await top_up(wallet, cid, 20000)
    assert (await route(routing, zip_code)).candidate.contractor_id == cid
    assert await _usage_keys(redis_client, cid) == {}
