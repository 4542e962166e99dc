"""RoutingService.RouteCall at a fixed offered load (open loop) through gRPC with the wallet in the path, against
a bare grpc.aio echo service at the same load in the same run; then the same with 100,000 contractors' claims.

    python bench/route_call.py                 # 500 calls/s for 10 s per phase; --rate R --seconds S --help

Wallet, routing and the echo server run as subprocesses (`python -m services.cli serve ...`) on a scratch
database. Setup (untimed): 250 ZIPs priced, each claimed by a primary and 3 backups (1,000 contractors, topped up,
concurrency cap raised so only money decides), via routing's own RPCs. Phases, each after a 2 s warm-up at the
same rate: echo, the wallet's Reserve alone and RouteCall with those 1,000 contractors' claims, taking turns in
one-second windows so all three see the same machine; then 99,000 more contractors' claims on 24,750
more ZIPs are bulk-loaded, routing restarts (cold cache), echo again, RouteCall again. Calls go to random ZIPs of
the 250, from random caller numbers. Latency is measured from each call's scheduled send time (open loop, so a
stall shows up as latency instead of a lower rate). Targets (issue 4): RouteCall p99 <= 2x echo p99; p99 with
100,000 contractors within 20% of p99 with 1,000."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import pathlib
import random
import subprocess
import sys
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import grpc  # noqa: E402

from bench import common, profiles  # noqa: E402
from callersync.routing.v1 import routing_pb2 as pb  # noqa: E402
from callersync.routing.v1 import routing_pb2_grpc  # noqa: E402
from callersync.wallet.v1 import wallet_pb2 as wpb  # noqa: E402
from callersync.wallet.v1 import wallet_pb2_grpc  # noqa: E402
from services.ops import migrate_all  # noqa: E402
from services.runtime import event_loop  # noqa: E402

HOT_ZIPS = 250
PER_ZIP = 4
RATE_CENTS = 4500
ECHO_METHOD = "/bench.Echo/Echo"


# ---------------------------------------------------------------- the baseline: a bare grpc.aio echo

async def serve_echo(port: int, tls_dir: str = "") -> None:
    """With tls_dir (bench/profiles.py's certificates), mutual TLS as the services serve it."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    if tls_dir:
        cert, key, ca = common.cert_files(tls_dir, "echo")
        server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials(
            [(key.read_bytes(), cert.read_bytes())], root_certificates=ca.read_bytes(), require_client_auth=True))
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


# ---------------------------------------------------------------- open-loop load

async def open_loop(send, rate: float, seconds: float) -> tuple[list[float], int]:
    """Sends rate*seconds calls at fixed intervals whatever the replies do; latency from the scheduled time."""
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    start = clock() + 0.05
    tasks = []

    async def one(i: int, due: float) -> None:
        nonlocal errors
        try:
            await send(i)
            latencies.append((clock() - due) * 1000.0)
        except grpc.aio.AioRpcError:
            errors += 1

    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return latencies, errors


def summary(name: str, latencies: list[float], errors: int, extra: str = "") -> dict:
    p50, p99 = common.percentile(latencies, 50), common.percentile(latencies, 99)
    print(f"  {name:<34} n={len(latencies):>5} errors={errors:<3} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms {extra}",
          flush=True)
    return {"n": len(latencies), "errors": errors, "p50_ms": p50, "p99_ms": p99}


async def phase(label: str, echo_target: str, routing_target: str, wallet_target: str, zips: list[str],
                rate: float, seconds: float, run_id: str, pids: dict[str, int], warmup: float = 2.0,
                profile: profiles.Profile = profiles.BARE) -> dict:
    rng = random.Random(label)
    # The bench stands in for the routing engine (RouteCall) and for routing (its one wallet hop, Reserve).
    async with profile.channel(echo_target, "routing-engine") as ech, \
            profile.channel(routing_target, "routing-engine") as rch, profile.channel(wallet_target, "routing") as wch:
        echo = ech.unary_unary(ECHO_METHOD)
        routing = routing_pb2_grpc.RoutingServiceStub(rch)
        wallet = wallet_pb2_grpc.WalletServiceStub(wch)
        hot = [f"bench-{run_id}-{z}-{k}" for z in zips for k in range(PER_ZIP)]
        sample = pb.RouteCallRequest(call_id="x" * 28, zip="60614", caller_number="+14155550123").SerializeToString()
        outcomes: dict[int, int] = {}

        async def send_echo(i: int) -> None:
            await echo(sample, timeout=10)

        async def send_route(i: int, zip_code: str | None = None) -> None:
            reply = await routing.RouteCall(pb.RouteCallRequest(
                call_id=f"{run_id}-{label}-{i}-{uuid.uuid4().hex[:6]}", zip=zip_code or rng.choice(zips),
                caller_number=f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}"), timeout=10)
            outcomes[reply.outcome] = outcomes.get(reply.outcome, 0) + 1

        async def first_call_of_zip(i: int) -> None:  # the ZIP's claims are not in routing's cache yet
            await send_route(i, zips[i])

        reserve_ids = itertools.count()

        async def send_reserve(i: int) -> None:  # the one wallet hop a RouteCall makes, alone
            await wallet.Reserve(wpb.ReserveRequest(
                contractor_id=rng.choice(hot), call_id=f"{run_id}-{label}-r{next(reserve_ids)}", amount_cents=1,
                expires_in_s=30), timeout=10)

        print(f"{label}: {rate:.0f} calls/s for {seconds:.0f} s each ({common.cpu_load()})", flush=True)
        await open_loop(send_echo, rate, warmup)
        await open_loop(send_reserve, rate, warmup / 2)
        await open_loop(send_route, rate, warmup)
        # Steady state: every hot ZIP called once before measuring (a routing replica keeps a ZIP's claims
        # until they change). What the first call of a ZIP costs is reported on its own.
        cold = await open_loop(first_call_of_zip, rate, len(zips) / rate)
        outcomes.clear()
        # The echo, the Reserve hop alone (where RouteCall's time goes) and RouteCall take turns in one-second
        # windows, so all three see the same machine: on these VMs a hop that finds its process's core idle
        # pays hundreds of µs to wake it, and that cost drifts by 2x with whatever ran just before.
        sends = {"echo": send_echo, "reserve": send_reserve, "route": send_route}
        got: dict[str, tuple[list[float], int]] = {name: ([], 0) for name in sends}
        cpu_s = {name: dict.fromkeys(pids, 0.0) for name in sends}
        windows = max(1, round(seconds))
        for _ in range(windows):
            for name, send in sends.items():
                before = {who: common.cpu_seconds([pid]) for who, pid in pids.items()}
                latencies, errors = await open_loop(send, rate, seconds / windows)
                got[name] = (got[name][0] + latencies, got[name][1] + errors)
                for who, pid in pids.items():
                    cpu_s[name][who] += common.cpu_seconds([pid]) - before[who]
        echo_fig = summary("grpc.aio echo", *got["echo"])
        reserve_fig = summary("wallet Reserve alone", *got["reserve"])
        route_fig = summary("RouteCall (wallet in the path)", *got["route"])
        cold_fig = summary("RouteCall, first call of each ZIP", *cold)
        calls = rate * seconds
        cpu_ms = {name: cpu_s["route"][name] * 1000 / calls for name in pids}
        print("  CPU per RouteCall: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu_ms.items()), flush=True)
        # The same processes' CPU per echo call and per Reserve alone: what a hop costs at this rate on this machine
        hop_ms = {"echo": cpu_s["echo"]["echo"] * 1000 / calls, "reserve": cpu_s["reserve"]["wallet"] * 1000 / calls}
        print(f"  CPU per echo call: echo server {hop_ms['echo']:.2f} ms; per Reserve alone: wallet "
              f"{hop_ms['reserve']:.2f} ms", flush=True)
        echo_fig["server_cpu_ms_per_call"] = hop_ms["echo"]
        reserve_fig["wallet_cpu_ms_per_call"] = hop_ms["reserve"]
        route_fig["cpu_ms_per_call"] = cpu_ms
        offered = outcomes.get(pb.ROUTE_OUTCOME_OFFERED, 0)
        print(f"  outcomes: {offered} offered of {sum(outcomes.values())}; "
              f"p99 ratio RouteCall/echo = {route_fig['p99_ms'] / echo_fig['p99_ms']:.2f} (target <= 2)", flush=True)
    route_fig["peak_memory_mb"] = {name: common.peak_memory_mb(pid) for name, pid in pids.items()}
    return {"echo": echo_fig, "reserve_alone": reserve_fig, "route_call": route_fig, "first_call_of_zip": cold_fig,
            "offered": offered, "rate": rate,
            "seconds": seconds, "p99_ratio": route_fig["p99_ms"] / echo_fig["p99_ms"]}


# ---------------------------------------------------------------- setup

async def load_hot_set(routing_target: str, wallet_target: str, url: str, run_id: str,
                       hot_zips: int = HOT_ZIPS, profile: profiles.Profile = profiles.BARE) -> list[str]:
    zips = [f"{i:05d}" for i in range(10_000, 10_000 + hot_zips)]
    conn = await asyncpg.connect(url)
    try:  # routing's rate projection, as billing's ZipRateChanged events would have filled it
        await conn.execute("INSERT INTO routing.zip_rates (zip, effective_from, rate_cents)"
                           " SELECT z, now() - interval '1 day', $2 FROM unnest($1::text[]) z", zips, RATE_CENTS)
    finally:
        await conn.close()
    # Claims, caps and top-ups are what contractors do through the gateway.
    async with profile.channel(routing_target, "gateway") as rch, profile.channel(wallet_target, "gateway") as wch:
        routing = routing_pb2_grpc.RoutingServiceStub(rch)
        wallet = wallet_pb2_grpc.WalletServiceStub(wch)
        sem = asyncio.Semaphore(32)

        async def contractor(zip_code: str, k: int) -> None:
            cid = f"bench-{run_id}-{zip_code}-{k}"
            async with sem:
                await routing.ClaimZip(pb.ClaimZipRequest(
                    contractor_id=cid, zip=zip_code,
                    position=pb.CLAIM_POSITION_PRIMARY if k == 0 else pb.CLAIM_POSITION_BACKUP))
                await wallet.TopUp(wpb.TopUpRequest(reason="operator credit", contractor_id=cid, amount_cents=1_000_000,
                                                    payment_reference=f"bench-{cid}", idempotency_key=f"bench-{cid}"))
                await routing.SetCaps(pb.SetCapsRequest(contractor_id=cid, caps=pb.Caps(max_concurrent_calls=100_000)))

        # Primaries first, so every ZIP's cascade is primary + 3 backups.
        for k in range(PER_ZIP):
            await asyncio.gather(*(contractor(z, k) for z in zips))
    return zips


async def load_background(url: str, contractors: int, run_id: str, first_zip: int = 20_000) -> None:
    """More contractors' claims (PER_ZIP per ZIP, on ZIPs from first_zip on), bulk-inserted into routing's
    tables as ClaimZip would have left them; these ZIPs are never called."""
    zips = [f"{i:05d}" for i in range(first_zip, first_zip + contractors // PER_ZIP)]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO routing.zip_rates (zip, effective_from, rate_cents)"
                           " SELECT z, now() - interval '1 day', $2 FROM unnest($1::text[]) z", zips, RATE_CENTS)
        await conn.execute(
            "INSERT INTO routing.claims (zip, contractor_id, position, backup_rank)"
            " SELECT z, 'bg-' || $2 || '-' || z || '-' || k, CASE WHEN k = 0 THEN 'primary' ELSE 'backup' END, k"
            " FROM unnest($1::text[]) z, generate_series(0, $3 - 1) k", zips, run_id, PER_ZIP)
        await conn.execute("ANALYZE routing.claims")
        print(f"loaded {await conn.fetchval('SELECT count(*) FROM routing.claims')} claims", flush=True)
    finally:
        await conn.close()


async def run(st: common.Stack, args: argparse.Namespace, redis_db: int = 0,
              profile: profiles.Profile = profiles.BARE) -> dict:
    """Setup, then phase 1 (the hot set plus args.preload background contractors' claims and args.history
    ledger entries per hot wallet); with args.background, phase 2 after loading that many more claims and
    restarting routing. Returns {"phase1": ..., "phase2": ...} figures."""
    run_id = uuid.uuid4().hex[:6]
    results: dict = {"rate": args.rate, "seconds": args.seconds, "hot_zips": args.hot_zips,
                     "hot_contractors": args.hot_zips * PER_ZIP, "preloaded_contractors": args.preload,
                     "history_per_wallet": args.history}
    async with common.scratch_database(st.database_url, "bench_route") as url:
        await migrate_all(url)
        wallet_port, routing_port, echo_port = common.free_port(), common.free_port(), common.free_port()
        env = {"CALLERSYNC_DATABASE_URL": url, "CALLERSYNC_REDIS_URL": st.redis_for(redis_db),
               "CALLERSYNC_WALLET_TARGET": f"127.0.0.1:{wallet_port}",
               "CALLERSYNC_BILLING_TARGET": f"127.0.0.1:{common.free_port()}",
               "CALLERSYNC_ROUTING_BURST_MAX_CALLS": "1000000", "CALLERSYNC_DB_POOL_SIZE": "8"}
        echo = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--echo-server",
                                 str(echo_port), *profile.echo_args()])
        try:
            with profiles.serve_subprocess("wallet", env, wallet_port, profile, args.server_tree) as wallet_proc:
                routing_target = f"127.0.0.1:{routing_port}"
                if args.preload:
                    await load_background(url, args.preload, run_id)
                with profiles.serve_subprocess("routing", env, routing_port, profile,
                                               args.server_tree) as routing_proc:
                    pids = {"routing": routing_proc.pid, "wallet": wallet_proc.pid, "echo": echo.pid,
                            "bench client": os.getpid()}
                    zips = await load_hot_set(routing_target, f"127.0.0.1:{wallet_port}", url, run_id, args.hot_zips,
                                              profile)
                    hot = [f"bench-{run_id}-{z}-{k}" for z in zips for k in range(PER_ZIP)]
                    seeded = await common.seed_ledger(url, hot, args.history, run_id)
                    print(f"setup: {args.hot_zips} ZIPs, {len(hot)} contractors with wallets, "
                          f"{args.preload} more contractors' claims, {seeded} seeded ledger entries", flush=True)
                    results["phase1"] = await phase(
                        f"{len(hot) + args.preload:,} contractors' claims", f"127.0.0.1:{echo_port}",
                        routing_target, f"127.0.0.1:{wallet_port}", zips, args.rate, args.seconds, run_id, pids,
                        args.warmup, profile)
                if args.background:
                    await load_background(url, args.background, run_id, first_zip=20_000 + args.preload // PER_ZIP)
                    with profiles.serve_subprocess("routing", env, routing_port, profile,
                                                   args.server_tree) as routing_proc:
                        pids["routing"] = routing_proc.pid
                        results["phase2"] = await phase(
                            f"{len(hot) + args.preload + args.background:,} contractors' claims",
                            f"127.0.0.1:{echo_port}", routing_target, f"127.0.0.1:{wallet_port}", zips, args.rate,
                            args.seconds, run_id, pids,
                            args.warmup, profile)
            results["settings"] = await common.server_settings(url)
        finally:
            echo.terminate()
            echo.wait(timeout=10)
    return results


async def main(args: argparse.Namespace) -> None:
    with common.stack() as st, (profiles.production() if args.production else
                                contextlib.nullcontext(profiles.BARE)) as profile:
        results = await run(st, args, profile=profile)
        results["telemetry"] = profile.telemetry_counts()
    if "phase2" in results:
        small = results["phase1"]["route_call"]["p99_ms"]
        large = results["phase2"]["route_call"]["p99_ms"]
        print(f"p99 with {args.hot_zips * PER_ZIP + args.preload + args.background:,} vs "
              f"{args.hot_zips * PER_ZIP + args.preload:,} contractors: {large:.2f} / {small:.2f} ms = "
              f"{large / small:.2f} (target within 20%)", flush=True)
    results["load"] = common.cpu_load()
    print(f"written to {common.write_result('route_call', results)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="offered calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--hot-zips", type=int, default=HOT_ZIPS, help="ZIPs called, 4 contractors each")
    parser.add_argument("--preload", type=int, default=0, help="contractors' claims bulk-loaded before phase 1")
    parser.add_argument("--history", type=int, default=0, help="ledger entries seeded per called contractor")
    parser.add_argument("--background", type=int, default=99_000, help="extra contractors' claims in phase 2")
    parser.add_argument("--server-tree", type=pathlib.Path, default=common.ROOT,
                        help="checkout whose services run (a git worktree of another commit, for before/after)")
    parser.add_argument("--echo-server", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--echo-tls", default="", help=argparse.SUPPRESS)
    parser.add_argument("--production", action="store_true",
                        help="the production profile (mTLS, OTLP tracing and metrics, INFO logs): bench/profiles.py")
    return parser.parse_args(argv)


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.echo_server:
        event_loop.run(serve_echo(parsed.echo_server, parsed.echo_tls))
    else:
        os.environ.setdefault("CALLERSYNC_LOG_LEVEL", "WARNING")
        event_loop.run(main(parsed))
