"""After Redis lost billing's stream, routing asks billing to publish its events again: from an hour before the
last one it applied, or all of them when it applied none; the events it did read are deduped by event id."""

import datetime as dt

import grpc

from callersync.billing.v1 import billing_pb2_grpc
from services.routing.billing_events import REPLAY_MARGIN, STREAM, EventReplay
from services.routing.clients import BillingClient
from services.routing.storage import RoutingStore
from tests.billing.support import outbox_settled, set_rate, unique_zip


async def test_a_routing_that_applied_nothing_asks_for_every_event(isolated, db, billing_target):
    async with grpc.aio.insecure_channel(billing_target) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        await set_rate(billing, unique_zip(), 2300)
        await outbox_settled(db)  # what is still unpublished gets published anyway, and is not counted
        replay = EventReplay(RoutingStore(isolated), BillingClient(billing, timeout_s=5.0))
        everything = await db.fetchval("SELECT count(*) FROM billing.outbox")
        replay.start()
        queued = await replay.done()
    assert queued >= everything > 0


async def test_a_routing_asks_from_an_hour_before_the_last_event_it_applied(isolated, db, billing_target):
    async with grpc.aio.insecure_channel(billing_target) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        await set_rate(billing, unique_zip(), 2400)
        await outbox_settled(db)
        newest = await db.fetchval("SELECT max(created_at) FROM billing.outbox")
        replay = EventReplay(RoutingStore(isolated), BillingClient(billing, timeout_s=5.0))
        # Applied an hour and a second after billing's newest event: nothing of billing's is that recent.
        await isolated.execute("INSERT INTO routing.consumed_events (stream, event_id, applied_at)"
                               " VALUES ($1, 1, $2)", STREAM, newest + REPLAY_MARGIN + dt.timedelta(seconds=1))
        assert await replay.replay_once() == 0
        # Applied exactly an hour after it: that event, and whatever else is as recent, is published again.
        await isolated.execute("UPDATE routing.consumed_events SET applied_at = $1", newest + REPLAY_MARGIN)
        expected = await db.fetchval("SELECT count(*) FROM billing.outbox WHERE created_at >= $1", newest)
        assert await replay.replay_once() == expected >= 1
