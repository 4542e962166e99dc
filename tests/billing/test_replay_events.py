"""ReplayEvents: billing publishes its events again from the outbox, for a consumer whose stream Redis lost."""

import grpc
import pytest

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import events_pb2
from services.billing.events import EVENTS_STREAM
from tests.billing.support import at, outbox_settled, set_rate, unique_zip


async def _published_ids(redis_client) -> list[int]:
    entries = await redis_client.xrange(EVENTS_STREAM)
    return [events_pb2.BillingEvent.FromString(fields[b"data"]).event_id for _, fields in entries]


async def test_events_since_a_moment_are_published_again_and_older_ones_are_not(billing, db, redis_client):
    old_zip, new_zip = unique_zip(), unique_zip()
    await set_rate(billing, old_zip, 2100)
    await outbox_settled(db)
    between = await db.fetchval("SELECT now()")
    await set_rate(billing, new_zip, 2200)
    await outbox_settled(db)
    old_id, new_id = [await db.fetchval(
        "SELECT max(event_id) FROM billing.outbox WHERE created_at < $1", between),
        await db.fetchval("SELECT max(event_id) FROM billing.outbox")]
    before = await _published_ids(redis_client)

    reply = await billing.ReplayEvents(pb.ReplayEventsRequest(since=at(between), requested_by="test"))
    assert reply.events_queued >= 1
    await outbox_settled(db)
    again = (await _published_ids(redis_client))[len(before):]
    assert new_id in again and old_id not in again
    assert len(again) == reply.events_queued


async def test_a_replay_must_say_who_asks(billing, db):
    unpublished = await db.fetchval("SELECT count(*) FROM billing.outbox WHERE published_at IS NULL")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.ReplayEvents(pb.ReplayEventsRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requested_by" in caught.value.details()
    assert await db.fetchval("SELECT count(*) FROM billing.outbox WHERE published_at IS NULL") == unpublished
