"""Every routing replica caches each ZIP's claims, profiles and rate; a write through any replica reaches every
other one at its next call for that ZIP, and leaves the other ZIPs' copies alone."""

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from callersync.routing.v1 import routing_pb2 as pb
from callersync.routing.v1 import routing_pb2_grpc
from services.routing.app import build
from services.routing.directory import Directory
from services.routing.live_state import Change, LiveState
from services.routing.storage import RoutingStore
from tests.conftest import serving
from tests.routing.conftest import CONFIG
from tests.routing.support import claim, contractors, price, route, top_up


@pytest.fixture
async def replica(routing_settings) -> AsyncIterator[routing_pb2_grpc.RoutingServiceStub]:
    """A second routing server on the same PostgreSQL and Redis, with a cache of its own."""
    async with serving(await build(routing_settings, 0, CONFIG)) as target, \
            grpc.aio.insecure_channel(target) as channel:
        yield routing_pb2_grpc.RoutingServiceStub(channel)


async def test_claims_changed_through_one_replica_route_the_next_call_on_another(
        routing, replica, wallet, redis_client, db, zip_code):
    first, second = contractors(2)
    await price(redis_client, db, zip_code, 3000)
    for cid in (first, second):
        await top_up(wallet, cid, 20000)
    await claim(routing, first, zip_code)
    assert (await route(replica, zip_code)).candidate.contractor_id == first  # the replica has the ZIP cached now

    await routing.ReleaseZip(pb.ReleaseZipRequest(contractor_id=first, zip=zip_code))
    await claim(routing, second, zip_code)
    assert (await route(replica, zip_code)).candidate.contractor_id == second

    # A profile is part of the view of every ZIP its contractor claims: hours on another day only, three days
    # from today, so that midnight passing before the route below leaves it outside them too.
    other_day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoweekday()
    await routing.SetSchedule(pb.SetScheduleRequest(contractor_id=second, time_zone="UTC", weekly_hours=[
        pb.WeeklyHours(day=other_day, start_minute=0, end_minute=1440)]))
    reply = await route(replica, zip_code)
    assert reply.outcome == pb.ROUTE_OUTCOME_NO_CANDIDATE
    assert [(s.contractor_id, s.reason) for s in reply.skipped] == [(second, pb.SKIP_REASON_OUTSIDE_HOURS)]


async def _look(directory: Directory, live: LiveState, zip_code: str) -> bool:
    """What RouteCall does before routing: read the generations, drop what changed, load what is missing."""
    admission = await live.admit(None, None, [], 0.0, zip_code)
    dropped = directory.observe(admission.gen_claims, admission.gen_blocklist, zip_code, admission.gen_zip)
    await directory.view(zip_code)
    return dropped


async def test_a_write_drops_the_copies_of_what_it_changed_and_nothing_else(
        routing, redis_client, redis_pipe, routing_settings, db, make_zip):
    changed, untouched = make_zip(), make_zip()
    for z in (changed, untouched):
        await price(redis_client, db, z, 3000)
        await claim(routing, contractors(1)[0], z)
    pool = await asyncpg.create_pool(routing_settings.database_url, min_size=1, max_size=2)
    try:
        live = LiveState(redis_client, redis_pipe, burst_window_s=60, session_ttl_s=60, slot_ttl_s=60)
        directory = Directory(RoutingStore(pool))
        for z in (changed, untouched):
            await _look(directory, live, z)
            assert directory.cached(z) is not None and not await _look(directory, live, z)

        await live.bump(Change(zips=(changed,)))  # as another replica's ClaimZip does
        assert await _look(directory, live, changed)
        assert not await _look(directory, live, untouched)

        await live.bump(Change(blocklist=True))
        assert not await _look(directory, live, changed) and directory.cached(untouched) is not None

        await live.bump(Change(every_zip=True))  # a whole rate card re-read
        assert directory.cached(untouched) is not None  # until it looks again
        assert await _look(directory, live, untouched)
        assert directory.cached(changed) is None
    finally:
        await pool.close()


async def test_a_zip_without_claims_or_rate_loads_as_empty(routing_settings, make_zip):
    pool = await asyncpg.create_pool(routing_settings.database_url, min_size=1, max_size=2)
    try:
        view = await RoutingStore(pool).zip_view(make_zip())
    finally:
        await pool.close()
    assert view.claims == [] and view.rate_cents is None and view.next_rate_change_at is None
