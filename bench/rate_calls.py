"""BillingService.RateCalls end to end (billing, wallet, PostgreSQL, Redis) against pgbench TPC-B on the same \
PostgreSQL.

    python bench/rate_calls.py               # 4,000 calls; --calls N --batch B --in-flight K; --help

Wallet and billing run as `python -m services.cli serve` subprocesses in a scratch database. Setup (untimed) tops
up 200 contractors, prices 20 ZIPs, and for every call makes the reservation routing would have made on the last
leg. The mix is realistic: about half billable (connected 30 s or more, a tenth of them dropped after 30 s), the
rest free (missed then short, voicemail, no answer, under 30 s). The timed part sends the calls in RateCalls
batches; each billable call captures its reservation, each free one releases it, each decision and its CallRated
event commit in billing's PostgreSQL. Afterwards it checks that every billable call was charged exactly once and
that the wallets reconcile. Then pgbench `-i -s 10` and `-c 8 -j 2 -T 10 -M prepared` in another scratch database.
Ratio: billable calls settled per second / pgbench tps (the issue's target is at least 2)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import pathlib
import random
import sys
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from bench import common, profiles  # noqa: E402
from callersync.billing.v1 import billing_pb2 as pb  # noqa: E402
from callersync.billing.v1 import billing_pb2_grpc  # noqa: E402
from callersync.wallet.v1 import wallet_pb2 as wpb  # noqa: E402
from callersync.wallet.v1 import wallet_pb2_grpc  # noqa: E402
from services.ops import migrate_all  # noqa: E402
from services.wallet.storage import reconcile  # noqa: E402
from tests.billing.calls import call, connected, leg, missed  # noqa: E402

CONTRACTORS = 200
ZIPS = 20
RATE_CENTS = 4500


def make_call(rng: random.Random, run_id: str, i: int, zips: list[str], start: dt.datetime,
              contractors: int = CONTRACTORS) -> tuple[pb.FinishedCall, bool]:
    a, b = rng.sample(range(contractors), 2)
    primary, backup = f"bench-{run_id}-{a}", f"bench-{run_id}-{b}"
    roll = rng.random()
    kw = {"start": start}
    if roll < 0.45:
        legs, billable = [connected(primary, rng.uniform(30, 600), **kw)], True
    elif roll < 0.50:
        legs, billable = [connected(primary, rng.uniform(31, 300), hangup=pb.HANGUP_SIDE_NETWORK, **kw)], True
    elif roll < 0.65:
        legs, billable = [missed(primary, **kw), connected(backup, rng.uniform(1, 29.9), answered=25.0, **kw)], False
    elif roll < 0.80:
        legs, billable = [connected(primary, rng.uniform(5, 120), by=pb.ANSWERED_BY_VOICEMAIL, **kw)], False
    elif roll < 0.90:
        legs, billable = [missed(primary, **kw), missed(backup, rang=21.0, ended=41.0, **kw)], False
    else:
        legs, billable = [leg(primary, 0.5, 12.0, 3.0, **kw)], False
    return call(*legs, zip_code=zips[i % len(zips)], call_id=f"bench-{run_id}-call-{i}", start=start), billable


async def setup(wallet, billing, run_id: str, count: int, contractors: int = CONTRACTORS, zip_count: int = ZIPS,
                url: str = "", history: int = 0, reserver=None) -> tuple[list[pb.FinishedCall], int]:
    """`wallet` tops up, `billing` prices the ZIPs, `reserver` (default: `wallet`) makes routing's reservations."""
    reserver = reserver or wallet
    rng = random.Random(7)
    zips = [f"{90000 + i:05d}" for i in range(zip_count)]
    for z in zips:
        await billing.SetZipRate(pb.SetZipRateRequest(zip=z, rate_cents=RATE_CENTS, set_by="bench",
                                                      effective_from=Timestamp(seconds=1_577_836_800)))
    sem = asyncio.Semaphore(32)

    async def top_up(i: int) -> None:
        async with sem:
            await wallet.TopUp(wpb.TopUpRequest(
                reason="operator credit", contractor_id=f"bench-{run_id}-{i}", amount_cents=1_000_000,
                payment_reference=f"bench-{run_id}-{i}", idempotency_key=f"{run_id}-{i}"))

    await asyncio.gather(*(top_up(i) for i in range(contractors)))
    if history:
        await common.seed_ledger(url, [f"bench-{run_id}-{i}" for i in range(contractors)], history, run_id)
    start = dt.datetime(2025, 6, 1, 9, 0, tzinfo=dt.UTC)
    calls, billable = [], 0
    for i in range(count):
        c, is_billable = make_call(rng, run_id, i, zips, start, contractors)
        calls.append(c)
        billable += is_billable

    async def reserve(c: pb.FinishedCall) -> None:
        last = c.legs[-1]
        async with sem:
            reply = await reserver.Reserve(wpb.ReserveRequest(contractor_id=last.contractor_id, call_id=c.call_id,
                                                            amount_cents=RATE_CENTS))
        last.reservation_id = reply.reservation.reservation_id

    await asyncio.gather(*(reserve(c) for c in calls))
    return calls, billable


async def rate_all(billing, calls: list[pb.FinishedCall], batch: int, in_flight: int) -> tuple[float, list[float], int]:
    batches = [calls[i:i + batch] for i in range(0, len(calls), batch)]
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            b = queue.get_nowait()
            t0 = time.perf_counter()
            reply = await billing.RateCalls(pb.RateCallsRequest(calls=b), timeout=120)
            latencies.append((time.perf_counter() - t0) * 1000)
            failures += sum(r.code != 0 for r in reply.results)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - t0, latencies, failures


async def run_services(admin_url: str, redis_url: str, args, profile: profiles.Profile = profiles.BARE) -> dict:
    """Wallet and billing in a scratch database of their own; the timed RateCalls; the money checks."""
    run_id = uuid.uuid4().hex[:6]
    async with common.scratch_database(admin_url, "bench_rate") as url:
        await migrate_all(url)
        wallet_port, billing_port = common.free_port(), common.free_port()
        env = {"CALLERSYNC_DATABASE_URL": url, "CALLERSYNC_REDIS_URL": redis_url,
               "CALLERSYNC_WALLET_TARGET": f"127.0.0.1:{wallet_port}",
               "CALLERSYNC_SETTLEMENT_SWEEP_AFTER_MS": "600000"}
        tree = getattr(args, "server_tree", common.ROOT)
        wallet_at, billing_at = f"127.0.0.1:{wallet_port}", f"127.0.0.1:{billing_port}"
        with profiles.serve_subprocess("wallet", env, wallet_port, profile, tree) as wallet_proc, \
                profiles.serve_subprocess("billing", env, billing_port, profile, tree) as billing_proc:
            # Each call with the identity of the caller it stands for: top-ups come through the gateway,
            # reservations from routing, rates from an operator, finished calls from the routing engine.
            async with profile.channel(wallet_at, "gateway") as wch, profile.channel(wallet_at, "routing") as rch, \
                    profile.channel(billing_at, profiles.OPERATOR) as och, \
                    profile.channel(billing_at, "routing-engine") as bch:
                wallet = wallet_pb2_grpc.WalletServiceStub(wch)
                billing = billing_pb2_grpc.BillingServiceStub(bch)
                calls, billable = await setup(wallet, billing_pb2_grpc.BillingServiceStub(och), run_id, args.calls,
                                              args.contractors, args.zips, url, args.history,
                                              wallet_pb2_grpc.WalletServiceStub(rch))
                pids = [wallet_proc.pid, billing_proc.pid]
                # Where each rated call's CPU goes: the two services, their PostgreSQL backends, this client
                who = {"wallet": [wallet_proc.pid], "billing": [billing_proc.pid],
                       "postgres": await common.backend_pids(url), "bench client": [os.getpid()]}
                cpu0 = common.cpu_seconds(pids)
                split0 = {k: common.cpu_seconds(v) for k, v in who.items()}
                machine0 = common.machine_ticks()
                seconds, latencies, failures = await rate_all(billing, calls, args.batch, args.in_flight)
                # Below 1.0 the run waited on something other than CPU (locks, commits, round trips).
                machine_busy = common.busy_share(machine0, common.machine_ticks())
                cpu = common.cpu_seconds(pids) - cpu0
                split = {k: round((common.cpu_seconds(v) - split0[k]) / len(calls) * 1e6) for k, v in who.items()}
                # A re-send of the first batch must change nothing.
                again = await billing.RateCalls(pb.RateCallsRequest(calls=calls[:args.batch]), timeout=120)
                replayed = all(r.replayed for r in again.results)
                peak = {"wallet": common.peak_memory_mb(wallet_proc.pid),
                        "billing": common.peak_memory_mb(billing_proc.pid)}
        conn = await asyncpg.connect(url)
        try:
            charged = await conn.fetchval("SELECT count(*) FROM billing.charges")
            captured = await conn.fetchval("SELECT count(*) FROM wallet.entries WHERE kind = 'capture'")
            problems = {k: len(v) for k, v in (await reconcile(conn)).items() if v}
        finally:
            await conn.close()
    verify = {"billing_charges": charged, "billable": billable, "captures": captured, "failures": failures,
              "reconcile_problems": problems, "resend_replayed": replayed,
              "ok": charged == billable == captured and not problems and failures == 0 and replayed}
    return {
        "contractors": args.contractors, "zips": args.zips, "history_per_wallet": args.history,
        "verify": verify, "peak_memory_mb": peak,
        "calls": len(calls), "billable_calls": billable, "seconds": round(seconds, 3),
        "rated_calls_per_s": round(len(calls) / seconds, 1), "billable_settled_per_s": round(billable / seconds, 1),
        "batch": args.batch, "batches_in_flight": args.in_flight,
        "batch_latency_p50_ms": round(common.percentile(latencies, 50), 1),
        "batch_latency_p99_ms": round(common.percentile(latencies, 99), 1),
        "service_cpu_s_per_1000_calls": round(cpu / len(calls) * 1000, 2),
        "cpu_us_per_rated_call": split, "machine_busy_share": machine_busy,
    }


async def run_pgbench(admin_url: str, seconds: int, scale: int = 10) -> common.PgbenchResult:
    async with common.scratch_database(admin_url, "bench_pgbench") as url:
        await asyncio.to_thread(common.pgbench_init, url, scale)
        return await asyncio.to_thread(common.pgbench_run, url, 8, 2, seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--server-tree", type=pathlib.Path, default=common.ROOT,
                        help="checkout whose services run (a git worktree of another commit, for before/after)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--contractors", type=int, default=CONTRACTORS)
    parser.add_argument("--zips", type=int, default=ZIPS)
    parser.add_argument("--history", type=int, default=0, help="ledger entries seeded per contractor first")
    parser.add_argument("--production", action="store_true",
                        help="the production profile (mTLS, OTLP tracing and metrics, INFO logs): bench/profiles.py")
    return parser.parse_args(argv)


def report(figures: dict, label: str = "") -> None:
    print(f"{label}RateCalls: {figures['calls']} calls ({figures['billable_calls']} billable) in "
          f"{figures['seconds']} s = "
          f"{figures['rated_calls_per_s']} rated calls/s, {figures['billable_settled_per_s']} billable settled/s "
          f"(batches of {figures['batch']}, {figures['batches_in_flight']} in flight, "
          f"p50 {figures['batch_latency_p50_ms']} ms, p99 {figures['batch_latency_p99_ms']} ms per batch); "
          f"money check {'ok' if figures['verify']['ok'] else 'FAILED ' + str(figures['verify'])}", flush=True)
    split = figures["cpu_us_per_rated_call"]
    print(f"{label}CPU per rated call: " + ", ".join(f"{k} {v} µs" for k, v in split.items())
          + f" (sum {sum(split.values())} µs); the machine's cores were {figures['machine_busy_share']:.0%} busy",
          flush=True)


async def main() -> None:
    args = parse_args()
    with common.stack() as s, (profiles.production() if args.production else
                               contextlib.nullcontext(profiles.BARE)) as profile:
        figures = await run_services(s.database_url, s.redis_url, args, profile)
        figures["telemetry"] = profile.telemetry_counts()
        pg = await run_pgbench(s.database_url, args.pgbench_seconds)
        figures.update(pgbench_clients=pg.clients, pgbench_tps=round(pg.tps, 1),
                       ratio_billable_per_s_to_pgbench_tps=round(figures["billable_settled_per_s"] / pg.tps, 3),
                       ratio_rated_per_s_to_pgbench_tps=round(figures["rated_calls_per_s"] / pg.tps, 3),
                       postgres=await common.server_settings(s.database_url), load=common.cpu_load())
    report(figures)
    print(f"pgbench TPC-B -c 8: {figures['pgbench_tps']} tps")
    print(f"ratio billable settled/s per pgbench tps: {figures['ratio_billable_per_s_to_pgbench_tps']} (target >= 2); "
          f"rated calls/s per tps: {figures['ratio_rated_per_s_to_pgbench_tps']}; {figures['load']}")
    print(json.dumps(figures, sort_keys=True))
    common.write_result("rate_calls", figures)
    if not figures["verify"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
