"""Helpers the billing tests share: unique ZIPs, timestamps, reading billing's event stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random

from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import events_pb2
from services.billing.events import EVENTS_STREAM

_zips = itertools.count(random.Random().randrange(0, 90_000))


def unique_zip() -> str:
    """A ZIP no other test in this session prices, so tests share one database without interfering."""
    return f"{next(_zips) % 100_000:05d}"


def at(moment: dt.datetime | str) -> Timestamp:
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    out = Timestamp()
    out.FromDatetime(moment)
    return out


async def set_rate(billing, zip_code: str, cents: int, effective_from: str = "2020-01-01T00:00:00+00:00",
                   set_by: str = "ops@test") -> pb.SetZipRateResponse:
    return await billing.SetZipRate(
        pb.SetZipRateRequest(zip=zip_code, rate_cents=cents, effective_from=at(effective_from), set_by=set_by)
    )


async def stream_events(redis_client, match, timeout_s: float = 5.0, count: int = 1) -> list[events_pb2.BillingEvent]:
    """Waits for `count` events on billing's stream for which match(event) is true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = []
        for _id, fields in await redis_client.xrange(EVENTS_STREAM):
            event = events_pb2.BillingEvent.FromString(fields[b"data"])
            assert int(fields[b"event_id"]) == event.event_id
            if match(event):
                found.append(event)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def outbox_settled(db) -> None:
    """Waits until billing's relay has published every event of its outbox."""
    for _ in range(100):
        if not await db.fetchval("SELECT count(*) FROM billing.outbox WHERE published_at IS NULL"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("billing's relay left events unpublished")
