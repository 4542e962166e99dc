"""Faults injected while finished calls flow through routing, billing and the wallet (traffic.py): each service
SIGKILLed and restarted, PostgreSQL restarted, Redis flushed and restarted. After each, the checks of
call_checks.py and `callersync reconcile`. Each test prints what it injected, what was in flight, and what it
checked (`pytest tests/faults -s`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import time

import asyncpg
import grpc
import pytest
import redis.asyncio as redis

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.routing.v1 import routing_pb2 as rpb
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.demo.legs import stamp
from tests.billing.calls import call as finished_call
from tests.billing.calls import connected
from tests.clock import same_day_zone
from tests.faults import call_checks
from tests.faults.traffic import CallTraffic, Channels, set_up_world, unused_zip
from tests.system.processes import callersync_env, run_cli


async def traffic_through(stack, label: str, inject, **options) -> CallTraffic:
    """Starts call traffic, injects the fault once a fifth of the calls are done, lets the traffic finish, and
    runs every check. Returns the traffic for test-specific assertions."""
    channels = Channels(stack)
    try:
        world = await set_up_world(channels.stubs)
        traffic = CallTraffic(channels.stubs, world, **options)
        started = time.monotonic()
        running = asyncio.ensure_future(traffic.run())
        await asyncio.wait(
            [running, asyncio.ensure_future(traffic.wait_for(traffic.total_calls // 5))],
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert not running.done(), f"the traffic ended before the fault: {running}"
        calls, rpcs, done = traffic.calls_in_flight, traffic.rpcs_in_flight, len(traffic.calls)
        print(
            f"\n[{label}] injected after {done} of {traffic.total_calls} calls, with {calls} calls mid-cascade "
            f"and {rpcs} requests in flight"
        )
        await inject()
        try:
            await running
        except Exception:
            print_service_errors(stack)
            raise
        print(
            f"[{label}] traffic finished in {time.monotonic() - started:.1f} s: {traffic.summary()}; "
            f"{traffic.tally.retries} retried attempts {dict(sorted(traffic.tally.failed_attempts.items()))}"
            + (
                f"; {traffic.tally.sessions_lost} cascades cut short (session lost)"
                if traffic.tally.sessions_lost
                else ""
            )
        )
        conn = await asyncpg.connect(stack.database_url)
        try:
            for check in (
                call_checks.one_decision_per_call,
                call_checks.at_most_one_debit_per_call,
                call_checks.bookings_and_refunds_once,
                call_checks.wallets_add_up,
            ):
                print(f"[{label}] checked: {await check(conn, traffic)}")
        finally:
            await conn.close()
        reconciled = run_cli("reconcile", env=callersync_env(CALLERSYNC_DATABASE_URL=stack.database_url))
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        print(f"[{label}] checked: callersync reconcile exit 0")
        return traffic
    finally:
        await channels.close()


def print_service_errors(stack) -> None:
    """The services' own error lines, so a failed test shows the cause and not only the client's status."""
    for name, process in stack.processes.items():
        errors = [line for line in process.output().splitlines() if '"ERROR"' in line or "Traceback" in line]
        for line in errors[-3:]:
            print(f"{name}: {line[:3000]}")


def no_unexpected_codes(traffic: CallTraffic) -> None:
    codes = {name.split()[1] for name in traffic.tally.failed_attempts}
    assert not codes - {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"}, codes


@pytest.mark.parametrize("service", ["wallet", "billing", "routing"])
async def test_sigkill_a_service_while_calls_flow_and_restart_it(stack, service):
    async def inject():
        stack.processes[service].popen.send_signal(signal.SIGKILL)
        stack.processes[service].popen.wait()
        await asyncio.sleep(0.3)
        await asyncio.get_running_loop().run_in_executor(None, stack.start, service)

    traffic = await traffic_through(stack, f"SIGKILL {service}", inject)
    assert traffic.tally.retries > 0, "the kill landed while calls were in flight"
    assert traffic.tally.sessions_lost == 0, "cascade sessions live in Redis and survive a process"


async def test_restart_postgresql_while_calls_flow(stack, own_servers):
    pg = own_servers[0]

    async def inject():
        await asyncio.get_running_loop().run_in_executor(None, pg.restart)

    traffic = await traffic_through(stack, "PostgreSQL restart", inject)
    assert any(name.endswith("UNAVAILABLE") for name in traffic.tally.failed_attempts), traffic.tally
    assert traffic.tally.sessions_lost == 0


async def test_restart_postgresql_answers_unavailable_never_internal(stack, own_servers):
    """Reads hitting every service's pool while PostgreSQL restarts, up to five times: the only failures allowed
    are the retryable ones."""
    pg = own_servers[0]
    channels = Channels(stack)
    stubs = channels.stubs
    seen: dict[str, int] = {}
    stop = asyncio.Event()

    async def reader(i: int) -> None:
        asks = [
            lambda: stubs.billing.ExplainCall(bpb.ExplainCallRequest(call_id=f"nothing-{i}"), timeout=5),
            lambda: stubs.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=f"nobody-{i}"), timeout=5),
            lambda: stubs.routing.ListClaims(rpb.ListClaimsRequest(contractor_id=f"nobody-{i}"), timeout=5),
        ]
        while not stop.is_set():
            try:
                await asks[i % len(asks)]()
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
            seen[code] = seen.get(code, 0) + 1
            await asyncio.sleep(0.005)

    readers = [asyncio.ensure_future(reader(i)) for i in range(12)]
    restarts = 0
    try:
        while restarts < 5 and not {"INTERNAL", "UNKNOWN"} & set(seen):
            await asyncio.sleep(0.3)
            await asyncio.get_running_loop().run_in_executor(None, pg.restart)
            restarts += 1
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await channels.close()
    print(f"\n[PostgreSQL restart x{restarts}, reads on every service] answers: {dict(sorted(seen.items()))}")
    assert set(seen) <= {"OK", "NOT_FOUND", "UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"}, seen


async def flushall_and_restart(own_servers) -> None:
    vk, redis_url = own_servers[1], own_servers[3]
    client = redis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    await asyncio.get_running_loop().run_in_executor(None, vk.stop)
    await asyncio.sleep(0.3)
    await asyncio.get_running_loop().run_in_executor(None, vk.start)


async def test_flushall_and_restart_redis_while_calls_flow(stack, own_servers):
    traffic = await traffic_through(
        stack, "Redis FLUSHALL + restart", lambda: flushall_and_restart(own_servers)
    )
    no_unexpected_codes(traffic)


async def published(database_url: str, zip_code: str) -> None:
    """Waits until billing's relay has put every rate event of the ZIP in Redis (so a flush can lose them)."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            if not await conn.fetchval(
                    "SELECT count(*) FROM billing.outbox WHERE published_at IS NULL"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"billing's outbox still holds unpublished events for {zip_code}")
    finally:
        await conn.close()


async def wait_for_threshold(stubs, contractor: str, cents: int, within_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        wallet = (
            await stubs.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=contractor), timeout=5)
        ).wallet
        if wallet.pause_threshold_cents == cents:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"{contractor}'s pause threshold is {wallet.pause_threshold_cents}, not {cents}, "
        f"{within_s} s after the rate change"
    )


async def restart_routing(stack) -> None:
    """A routing process of the test's own, whose consumer groups an earlier flush in this folder cannot have
    broken (or, with Redis flushed meanwhile, one that finds them gone)."""
    stack.processes["routing"].kill()
    await asyncio.get_running_loop().run_in_executor(None, stack.start, "routing")


async def test_rate_changes_still_reach_routing_after_redis_flushall_and_restart(stack, own_servers):
    await restart_routing(stack)
    channels = Channels(stack)
    stubs = channels.stubs
    try:
        contractor, zip_code = f"flush-{time.time_ns()}", await unused_zip(stubs, random.Random(), set())
        now = time.time_ns()

        async def set_rate(cents: int, at_ns: int) -> None:
            await stubs.billing.SetZipRate(
                bpb.SetZipRateRequest(
                    zip=zip_code, rate_cents=cents, set_by="faults", effective_from=stamp(at_ns)
                ),
                timeout=5,
            )

        await set_rate(3000, now - 3600 * 10**9)
        await stubs.wallet.TopUp(
            wpb.TopUpRequest(
                reason="operator credit",
                contractor_id=contractor,
                amount_cents=100_000,
                payment_reference=contractor,
                idempotency_key=contractor,
            ),
            timeout=5,
        )
        await stubs.routing.ClaimZip(
            rpb.ClaimZipRequest(contractor_id=contractor, zip=zip_code, position=rpb.CLAIM_POSITION_PRIMARY),
            timeout=5,
        )
        await wait_for_threshold(stubs, contractor, 3000, 5)
        await set_rate(4000, time.time_ns())
        before = await wait_for_threshold(stubs, contractor, 4000, 10)
        print(
            f"\n[Redis FLUSHALL + restart, rate events] before the fault a rate change reached the wallet's "
            f"pause threshold in {before:.1f} s"
        )
        await flushall_and_restart(own_servers)
        await set_rate(5000, time.time_ns())
        after = await wait_for_threshold(stubs, contractor, 5000, 5)
        print(f"[Redis FLUSHALL + restart, rate events] after the fault: in {after:.1f} s")
        # A rate event Redis held, unread (routing was down), when it lost everything: routing, started
        # again, finds its consumer group gone and re-reads billing's card, so the change still arrives.
        stack.processes["routing"].kill()
        await set_rate(6000, time.time_ns())
        await published(stack.database_url, zip_code)
        await flushall_and_restart(own_servers)
        await asyncio.get_running_loop().run_in_executor(None, stack.start, "routing")
        lost = await wait_for_threshold(stubs, contractor, 6000, 10)
        print(f"[Redis FLUSHALL + restart, rate events] an event lost unread in the flush: arrived by re-reading "
              f"billing's rate card {lost:.1f} s after routing started")
    finally:
        await channels.close()


async def test_a_rated_call_lost_in_a_redis_flush_still_counts_against_caps(stack, own_servers):
    """A CallRated event Redis held unread (routing down) when it lost everything: routing, started again, finds
    its consumer group gone and asks billing to replay its events, so the connected call still counts."""
    await restart_routing(stack)
    channels = Channels(stack)
    stubs = channels.stubs
    try:
        contractor, zip_code = f"replay-{time.time_ns()}", await unused_zip(stubs, random.Random(), set())
        await stubs.billing.SetZipRate(bpb.SetZipRateRequest(zip=zip_code, rate_cents=3000, set_by="faults",
                                                             effective_from=stamp(time.time_ns() - 3600 * 10**9)),
                                       timeout=5)
        await stubs.wallet.TopUp(wpb.TopUpRequest(reason="operator credit", contractor_id=contractor,
                                                  amount_cents=100_000,
                                                  payment_reference=contractor, idempotency_key=contractor), timeout=5)
        await stubs.routing.ClaimZip(rpb.ClaimZipRequest(contractor_id=contractor, zip=zip_code,
                                                         position=rpb.CLAIM_POSITION_PRIMARY), timeout=5)

        started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        # Caps count per local day: near midnight the call would count against yesterday (a CI run just after
        # midnight UTC failed so), so the contractor's schedule takes a zone where the call and the check share a
        # date.
        await stubs.routing.SetSchedule(rpb.SetScheduleRequest(
            contractor_id=contractor, time_zone=same_day_zone(started, started + dt.timedelta(minutes=6))),
            timeout=5)

        async def connected_today() -> int:
            reply = await stubs.routing.GetRoutingProfile(rpb.GetRoutingProfileRequest(contractor_id=contractor),
                                                          timeout=5)
            return reply.profile.connected_calls_today

        stack.processes["routing"].kill()
        rated = await stubs.engine_billing.RateCall(bpb.RateCallRequest(call=finished_call(
            connected(contractor, 90, start=started), zip_code=zip_code, start=started)), timeout=10)
        assert rated.decision.billable
        await published(stack.database_url, zip_code)
        await flushall_and_restart(own_servers)
        await asyncio.get_running_loop().run_in_executor(None, stack.start, "routing")
        t0 = time.monotonic()
        while await connected_today() != 1:
            assert time.monotonic() - t0 < 15, "the rated call lost in the flush never reached routing"
            await asyncio.sleep(0.1)
        print(f"\n[Redis FLUSHALL + restart, rated call] an event lost unread in the flush: replayed by billing, "
              f"counted by routing {time.monotonic() - t0:.1f} s after routing started")
    finally:
        await channels.close()
