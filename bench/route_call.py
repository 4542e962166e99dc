"""RoutingService.RouteCall at a fixed offered load (open loop) through gRPC with the wallet in the path, against
a bare grpc.aio echo service at the same load in the same run; then the same with 100,000 contractors' claims.

    python bench/route_call.py                 # 500 calls/s for 10 s per phase; --rate R --seconds S --help

Wallet, routing and the echo server run as subprocesses (`python -m services.cli serve ...`) on a scratch
database. Setup (untimed): 250 ZIPs priced, each claimed by a primary and 3 backups (1,000 contractors, topped up,
concurrency cap raised so only money decides), via routing's own RPCs. Phases, each after a 2 s warm-up at the
same rate: echo, RouteCall with those 1,000 contractors' claims; then 99,000 more contractors' claims on 24,750
more ZIPs are bulk-loaded, routing restarts (cold cache), echo again, RouteCall again. Calls go to random ZIPs of
the 250, from random caller numbers. Latency is measured from each call's scheduled send time (open loop, so a
stall shows up as latency instead of a lower rate). Targets (issue 4): RouteCall p99 <= 2x echo p99; p99 with
100,000 contractors within 20% of p99 with 1,000."""

from __future__ import annotations

import argparse
import asyncio
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

from bench import common  # noqa: E402
from callersync.routing.v1 import routing_pb2 as pb  # noqa: E402
from callersync.routing.v1 import routing_pb2_grpc  # noqa: E402
from callersync.wallet.v1 import wallet_pb2 as wpb  # noqa: E402
from callersync.wallet.v1 import wallet_pb2_grpc  # noqa: E402
from services.cli import migrate_all  # noqa: E402

HOT_ZIPS = 250
PER_ZIP = 4
RATE_CENTS = 4500
ECHO_METHOD = "/bench.Echo/Echo"


# ---------------------------------------------------------------- the baseline: a bare grpc.aio echo

async def serve_echo(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
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


async def phase(label: str, echo_target: str, routing_target: str, zips: list[str], rate: float, seconds: float,
                run_id: str, pids: dict[str, int]) -> dict:
    rng = random.Random(label)
    async with grpc.aio.insecure_channel(echo_target) as ech, grpc.aio.insecure_channel(routing_target) as rch:
        echo = ech.unary_unary(ECHO_METHOD)
        routing = routing_pb2_grpc.RoutingServiceStub(rch)
        sample = pb.RouteCallRequest(call_id="x" * 28, zip="60614", caller_number="+14155550123").SerializeToString()
        outcomes: dict[int, int] = {}

        async def send_echo(i: int) -> None:
            await echo(sample, timeout=10)

        async def send_route(i: int) -> None:
            reply = await routing.RouteCall(pb.RouteCallRequest(
                call_id=f"{run_id}-{label}-{i}-{uuid.uuid4().hex[:6]}", zip=rng.choice(zips),
                caller_number=f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}"), timeout=10)
            outcomes[reply.outcome] = outcomes.get(reply.outcome, 0) + 1

        print(f"{label}: {rate:.0f} calls/s for {seconds:.0f} s each ({common.cpu_load()})", flush=True)
        await open_loop(send_echo, rate, 2)  # warm-up
        echo_fig = summary("grpc.aio echo", *await open_loop(send_echo, rate, seconds))
        await open_loop(send_route, rate, 2)
        outcomes.clear()
        cpu_before = {name: common.cpu_seconds([pid]) for name, pid in pids.items()}
        route_fig = summary("RouteCall (wallet in the path)", *await open_loop(send_route, rate, seconds))
        calls = rate * seconds
        cpu_ms = {name: (common.cpu_seconds([pid]) - cpu_before[name]) * 1000 / calls for name, pid in pids.items()}
        print("  CPU per RouteCall: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu_ms.items()), flush=True)
        route_fig["cpu_ms_per_call"] = cpu_ms
        offered = outcomes.get(pb.ROUTE_OUTCOME_OFFERED, 0)
        print(f"  outcomes: {offered} offered of {sum(outcomes.values())}; "
              f"p99 ratio RouteCall/echo = {route_fig['p99_ms'] / echo_fig['p99_ms']:.2f} (target <= 2)", flush=True)
    return {"echo": echo_fig, "route_call": route_fig, "offered": offered,
            "p99_ratio": route_fig["p99_ms"] / echo_fig["p99_ms"]}


# ---------------------------------------------------------------- setup

async def load_hot_set(routing_target: str, wallet_target: str, url: str, run_id: str) -> list[str]:
    zips = [f"{i:05d}" for i in range(10_000, 10_000 + HOT_ZIPS)]
    conn = await asyncpg.connect(url)
    try:  # routing's rate projection, as billing's ZipRateChanged events would have filled it
        await conn.execute("INSERT INTO routing.zip_rates (zip, effective_from, rate_cents)"
                           " SELECT z, now() - interval '1 day', $2 FROM unnest($1::text[]) z", zips, RATE_CENTS)
    finally:
        await conn.close()
    async with grpc.aio.insecure_channel(routing_target) as rch, grpc.aio.insecure_channel(wallet_target) as wch:
        routing = routing_pb2_grpc.RoutingServiceStub(rch)
        wallet = wallet_pb2_grpc.WalletServiceStub(wch)
        sem = asyncio.Semaphore(32)

        async def contractor(zip_code: str, k: int) -> None:
            cid = f"bench-{run_id}-{zip_code}-{k}"
            async with sem:
                await routing.ClaimZip(pb.ClaimZipRequest(
                    contractor_id=cid, zip=zip_code,
                    position=pb.CLAIM_POSITION_PRIMARY if k == 0 else pb.CLAIM_POSITION_BACKUP))
                await wallet.TopUp(wpb.TopUpRequest(contractor_id=cid, amount_cents=1_000_000,
                                                    payment_reference=f"bench-{cid}", idempotency_key=f"bench-{cid}"))
                await routing.SetCaps(pb.SetCapsRequest(contractor_id=cid, caps=pb.Caps(max_concurrent_calls=100_000)))

        # Primaries first, so every ZIP's cascade is primary + 3 backups.
        for k in range(PER_ZIP):
            await asyncio.gather(*(contractor(z, k) for z in zips))
    return zips


async def load_background(url: str, contractors: int, run_id: str) -> None:
    zips = [f"{i:05d}" for i in range(20_000, 20_000 + contractors // PER_ZIP)]
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


async def main(args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:6]
    with common.stack() as st:
        async with common.scratch_database(st.database_url, "bench_route") as url:
            await migrate_all(url)
            wallet_port, routing_port, echo_port = common.free_port(), common.free_port(), common.free_port()
            env = {"CALLERSYNC_DATABASE_URL": url, "CALLERSYNC_REDIS_URL": st.redis_url,
                   "CALLERSYNC_WALLET_TARGET": f"127.0.0.1:{wallet_port}",
                   "CALLERSYNC_BILLING_TARGET": f"127.0.0.1:{common.free_port()}",
                   "CALLERSYNC_ROUTING_BURST_MAX_CALLS": "1000000", "CALLERSYNC_DB_POOL_SIZE": "8"}
            echo = subprocess.Popen([sys.executable, __file__, "--echo-server", str(echo_port)])
            try:
                results = {}
                with common.serve_subprocess("wallet", env, wallet_port) as wallet_proc:
                    routing_target = f"127.0.0.1:{routing_port}"
                    with common.serve_subprocess("routing", env, routing_port) as routing_proc:
                        pids = {"routing": routing_proc.pid, "wallet": wallet_proc.pid, "bench client": os.getpid()}
                        zips = await load_hot_set(routing_target, f"127.0.0.1:{wallet_port}", url, run_id)
                        print(f"setup: {HOT_ZIPS} ZIPs, {HOT_ZIPS * PER_ZIP} contractors with wallets", flush=True)
                        results["contractors_1000"] = await phase(
                            "1,000 contractors' claims", f"127.0.0.1:{echo_port}", routing_target, zips,
                            args.rate, args.seconds, run_id, pids)
                    await load_background(url, args.background, run_id)
                    with common.serve_subprocess("routing", env, routing_port) as routing_proc:
                        pids["routing"] = routing_proc.pid
                        results["contractors_100000"] = await phase(
                            f"{HOT_ZIPS * PER_ZIP + args.background:,} contractors' claims",
                            f"127.0.0.1:{echo_port}", routing_target, zips, args.rate, args.seconds, run_id, pids)
                small = results["contractors_1000"]["route_call"]["p99_ms"]
                large = results["contractors_100000"]["route_call"]["p99_ms"]
                print(f"p99 with 100,000 vs 1,000 contractors: {large:.2f} / {small:.2f} ms = {large / small:.2f}"
                      " (target within 20%)", flush=True)
                results.update(rate=args.rate, seconds=args.seconds, load=common.cpu_load(),
                               settings=await common.server_settings(url))
                print(f"written to {common.write_result('route_call', results)}")
            finally:
                echo.terminate()
                echo.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="offered calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--background", type=int, default=99_000, help="extra contractors' claims in phase 2")
    parser.add_argument("--echo-server", type=int, default=0, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if parsed.echo_server:
        runner(serve_echo(parsed.echo_server))
    else:
        os.environ.setdefault("CALLERSYNC_LOG_LEVEL", "WARNING")
        runner(main(parsed))
