"""Helpers the routing tests share: billing events on the stream (the contract), claims, wallets, calls."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as redis
from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import events_pb2
from callersync.routing.v1 import routing_pb2 as pb
from callersync.routing.v1 import routing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.routing.app import build
from services.routing.billing_events import STREAM
from services.runtime.channels import client_channel
from tests.clock import same_day_zone
from tests.routing.conftest import CONFIG

# Far above any id billing's own outbox hands out in a test session, so the two never collide.
_event_ids = itertools.count(10**12 + random.randrange(10**9) * 1000)


def next_event_id() -> int:
    return next(_event_ids)


def ts(moment: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


async def publish(client: redis.Redis, event: events_pb2.BillingEvent, stream: str = STREAM) -> int:
    """What billing's outbox relay does: one entry with the event id, its kind and the serialized event."""
    if not event.event_id:
        event.event_id = next_event_id()
    event.occurred_at.CopyFrom(ts(dt.datetime.now(dt.UTC)))
    await client.xadd(stream, {"event_id": event.event_id, "type": event.WhichOneof("event"),
                               "data": event.SerializeToString()})
    return event.event_id


def rate_event(zip_code: str, cents: int, effective_from: dt.datetime | None = None) -> events_pb2.BillingEvent:
    when = effective_from or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    return events_pb2.BillingEvent(zip_rate_changed=events_pb2.ZipRateChanged(
        zip=zip_code, rate_cents=cents, effective_from=ts(when), set_by="test"))


async def eventually(check, timeout_s: float = 10.0, what: str = "condition"):
    """Polls an async check until it returns something truthy (consumers and relays run in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def price(client: redis.Redis, db: asyncpg.Pool, zip_code: str, cents: int) -> None:
    """Sets a ZIP's rate the way billing does (an event), and waits until routing applied it."""
    await publish(client, rate_event(zip_code, cents))

    async def applied():
        return await db.fetchval(
            "SELECT rate_cents = $2 FROM routing.zip_rates WHERE zip = $1 AND effective_from <= now()"
            " ORDER BY effective_from DESC LIMIT 1", zip_code, cents)

    await eventually(applied, what=f"rate of {zip_code}")


async def claim(routing, contractor_id: str, zip_code: str, position=pb.CLAIM_POSITION_PRIMARY, rank: int = 0):
    return await routing.ClaimZip(pb.ClaimZipRequest(contractor_id=contractor_id, zip=zip_code, position=position,
                                                     backup_rank=rank))


async def top_up(wallet, contractor_id: str, cents: int):
    key = uuid.uuid4().hex
    return await wallet.TopUp(wpb.TopUpRequest(reason="operator credit", contractor_id=contractor_id,
                                               amount_cents=cents, payment_reference=f"pay-{key}", idempotency_key=key))


async def get_wallet(wallet, contractor_id: str) -> wpb.Wallet:
    return (await wallet.GetWallet(wpb.GetWalletRequest(contractor_id=contractor_id))).wallet


def caller() -> str:
    """A caller number of its own, so no test trips another's burst limit."""
    return f"+1{random.randrange(2_000_000_000, 9_999_999_999)}"


def new_call() -> str:
    return f"call-{uuid.uuid4().hex[:16]}"


async def route(routing, zip_code: str, number: str | None = None, call_id: str | None = None):
    return await routing.RouteCall(pb.RouteCallRequest(call_id=call_id or new_call(), zip=zip_code,
                                                       caller_number=number or caller()))


def contractors(n: int) -> list[str]:
    return [f"ctr-{uuid.uuid4().hex[:12]}" for _ in range(n)]


async def capped_primary_and_backup(routing, wallet, redis_client, db, zip_code: str) -> tuple[str, str]:
    """A ZIP with a primary capped at one connected call a day and an uncapped backup, both able to pay. Many
    calls at once are allowed, so only the daily cap can make routing pass the primary over. The primary's day
    is one that the next ten minutes do not leave."""
    primary, backup = contractors(2)
    await price(redis_client, db, zip_code, 3000)
    await claim(routing, primary, zip_code)
    await claim(routing, backup, zip_code, pb.CLAIM_POSITION_BACKUP)
    for cid in (primary, backup):
        await top_up(wallet, cid, 20000)
    await routing.SetCaps(pb.SetCapsRequest(contractor_id=primary, caps=pb.Caps(daily_max_connected_calls=1,
                                                                                max_concurrent_calls=100)))
    # The cap counts per local day of the schedule's zone (UTC unless set): a call the test rates just before
    # midnight would count against a day the routes just after it no longer read.
    now = dt.datetime.now(dt.UTC)
    await routing.SetSchedule(pb.SetScheduleRequest(
        contractor_id=primary, time_zone=same_day_zone(now, now + dt.timedelta(minutes=10))))
    await routing.SetCaps(pb.SetCapsRequest(contractor_id=backup, caps=pb.Caps(max_concurrent_calls=100)))
    return primary, backup


@contextlib.asynccontextmanager
async def routing_with_a_claim(spans, routing_settings, wallet, redis_client, db, contractor: str,
                               zip_code: str) -> AsyncIterator[routing_pb2_grpc.RoutingServiceStub]:
    """A routing server of the test's own, built after `spans` so its wallet channel carries the trace context,
    with the contractor priced, topped up and claiming the ZIP; the spans of that set-up are cleared."""
    server = await build(routing_settings, 0, CONFIG)
    port = await server.start()
    try:
        await price(redis_client, db, zip_code, 4500)
        await top_up(wallet, contractor, 20_000)
        async with client_channel(f"127.0.0.1:{port}", "engine", routing_settings) as channel:
            routing = routing_pb2_grpc.RoutingServiceStub(channel)
            await claim(routing, contractor, zip_code)
            spans.clear()
            yield routing
    finally:
        await server.stop(1)
