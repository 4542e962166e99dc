"""WalletService.Charge through real gRPC against pgbench's TPC-B-like script, on the same PostgreSQL.

    python bench/wallet_charge.py            # 15 s of each; --quick for 5 s; --help for the knobs

The wallet runs as `python -m services.cli serve wallet` subprocess(es), so the load generator (in its own
process(es)) does not share the server's interpreter; all of them, PostgreSQL and Valkey share this machine's
cores, as pgbench's own client shares them with PostgreSQL. 64 concurrent clients charge 1,000 topped-up
wallets, every call with a new idempotency key; a call returns only after its entry is committed with
synchronous_commit on (the server's default, checked and printed). Afterwards the benchmark checks that every
acknowledged charge is in the ledger exactly once and that every wallet reconciles.

Then pgbench (`-i -s 10` in a scratch database, `-M prepared -j 2`) at 8 and at 64 clients. The ratio divides
charges/s by the better of the two pgbench figures. The last line printed is JSON with every figure; the
same goes to bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import multiprocessing
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
from callersync.wallet.v1 import wallet_pb2 as pb  # noqa: E402
from callersync.wallet.v1 import wallet_pb2_grpc  # noqa: E402
from services.runtime import event_loop  # noqa: E402

TOP_UP_CENTS = 1_000_000  # the default per-top-up maximum: $10,000 per wallet, far above what the run charges


def _channel(targets: list[str], profile: profiles.Profile, identity: str) -> grpc.aio.Channel:
    # Several wallet processes on several ports: the client spreads calls over them (client-side balancing).
    target = targets[0] if len(targets) == 1 else "ipv4:" + ",".join(targets)
    return profile.channel(target, identity, options=[("grpc.lb_policy_name", "round_robin")])


async def _top_up(targets: list[str], wallets: list[str], run_id: str, profile: profiles.Profile) -> None:
    async with _channel(targets, profile, "gateway") as channel:  # top-ups come through the gateway
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        sem = asyncio.Semaphore(32)

        async def one(cid: str) -> None:
            async with sem:
                await stub.TopUp(
                    pb.TopUpRequest(
                        reason="operator credit",
                        contractor_id=cid, amount_cents=TOP_UP_CENTS, payment_reference=f"bench-{run_id}-{cid}",
                        idempotency_key=f"{run_id}-topup-{cid}",
                    ),
                    timeout=60,
                )

        await asyncio.gather(*(one(c) for c in wallets))


ECHO_METHOD = "/bench.Echo/Echo"  # bench/route_call.py --echo-server serves it


async def _load(targets: list[str], wallets: list[str], clients: int, key_prefix: str, start_at: float,
                warmup_s: float, seconds: float, echo: bool | str = False,
                profile: profiles.Profile = profiles.BARE) -> dict:
    """Closed loop: each client sends its next Charge when the last returns. With echo, the same messages go
    to a bare grpc.aio echo server instead (as bytes, in and out): the ceiling of the stack itself."""
    measure_from = start_at + warmup_s
    until = measure_from + seconds
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    acknowledged = 0
    async with _channel(targets, profile, "billing") as channel:  # billing is who charges wallets
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        # echo: True for the bare echo, or another bytes-in method path (bench/floors.py's durable echo).
        send = channel.unary_unary(echo if isinstance(echo, str) else ECHO_METHOD) if echo else None
        await channel.channel_ready()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_started = time.process_time()

        async def client(c: int) -> None:
            nonlocal acknowledged
            rnd = random.Random(f"{key_prefix}-{c}")
            n = 0
            while time.time() < until:
                request = pb.ChargeRequest(
                    contractor_id=rnd.choice(wallets), amount_cents=rnd.randint(50, 400),
                    idempotency_key=f"{key_prefix}-{c}-{n}", reference="booking", description="AI booking",
                )
                n += 1
                started = time.perf_counter()
                try:
                    await (send(request.SerializeToString(), timeout=30) if send else stub.Charge(request, timeout=30))
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] += 1
                    continue
                took = time.perf_counter() - started
                acknowledged += 1
                if measure_from <= time.time() <= until:
                    latencies.append(took)

        await asyncio.gather(*(client(c) for c in range(clients)))
        cpu_s = time.process_time() - cpu_started
    return {"latencies": latencies, "acknowledged": acknowledged, "errors": dict(errors), "cpu_s": cpu_s}


def _load_process(targets, wallets, clients, key_prefix, start_at, warmup_s, seconds, echo=False,
                  profile=profiles.BARE) -> dict:
    return event_loop.run(_load(targets, wallets, clients, key_prefix, start_at, warmup_s, seconds, echo, profile))


def run_charges(targets: list[str], wallets: list[str], args: argparse.Namespace, run_id: str,
                server_pids: list[int], pg_pids: list[int], echo: bool | str = False,
                profile: profiles.Profile = profiles.BARE) -> dict:
    """64 clients split over args.client_procs load processes; returns the measured window's figures."""
    procs = args.client_procs
    share = [args.clients // procs + (1 if i < args.clients % procs else 0) for i in range(procs)]
    start_at = time.time() + 3.0  # time for the load processes to start and connect
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=procs, mp_context=ctx) as pool:
        # CPU per charge, whatever else the machine is doing: wallet processes and PostgreSQL backends.
        cpu_before = (common.cpu_seconds(server_pids), common.cpu_seconds(pg_pids), time.perf_counter())
        futures = [
            pool.submit(_load_process, targets, wallets, share[i], f"{run_id}-w{i}", start_at, args.warmup,
                        args.seconds, echo, profile)
            for i in range(procs)
        ]
        parts = [f.result() for f in futures]
        cpu_after = (common.cpu_seconds(server_pids), common.cpu_seconds(pg_pids), time.perf_counter())
    latencies = [x for p in parts for x in p["latencies"]]
    errors: collections.Counter[str] = collections.Counter()
    for p in parts:
        errors.update(p["errors"])
    acknowledged = sum(p["acknowledged"] for p in parts)
    return {
        "charges_per_s": len(latencies) / args.seconds,
        "wallet_cpu_us_per_charge": (cpu_after[0] - cpu_before[0]) / max(1, acknowledged) * 1e6,
        "postgres_cpu_us_per_charge": (cpu_after[1] - cpu_before[1]) / max(1, acknowledged) * 1e6,
        "client_cpu_us_per_charge": sum(p["cpu_s"] for p in parts) / max(1, acknowledged) * 1e6,
        "p50_ms": common.percentile(latencies, 50) * 1000,
        "p99_ms": common.percentile(latencies, 99) * 1000,
        "acknowledged": acknowledged,
        "errors": dict(errors),
    }


async def echo_ceiling(args: argparse.Namespace, profile: profiles.Profile = profiles.BARE) -> dict:
    """The Charge load shape (clients, load processes, message) against a bare grpc.aio echo server: what one
    unary call costs this machine's CPU with nothing behind it, so no service on this stack can beat it. In the
    production profile the echo serves mutual TLS (and nothing else: no telemetry, no logs)."""
    port = common.free_port()
    echo = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve().parent / "route_call.py"),
                             "--echo-server", str(port), *profile.echo_args()])
    try:
        common.wait_port(port, 30)
        figures = await asyncio.to_thread(run_charges, [f"127.0.0.1:{port}"], [f"echo-{i}" for i in range(64)],
                                          args, uuid.uuid4().hex[:6], [echo.pid], [], True, profile)
        figures["peak_memory_mb"] = {"echo": common.peak_memory_mb(echo.pid)}
    finally:
        echo.terminate()
        echo.wait(10)
    calls = figures.pop("charges_per_s")
    server_cpu = figures.pop("wallet_cpu_us_per_charge")
    client_cpu = figures.pop("client_cpu_us_per_charge")
    figures.pop("postgres_cpu_us_per_charge")
    print(f"{profile.label}grpc.aio echo, {args.clients} clients closed loop: {calls:,.0f} calls/s  "
          f"p50 {figures['p50_ms']:.1f} ms  p99 {figures['p99_ms']:.1f} ms; CPU per call: server {server_cpu:.0f} us, "
          "load generator "
          f"{client_cpu:.0f} us", flush=True)
    return {**figures, "calls_per_s": calls, "server_cpu_us_per_call": server_cpu,
            "client_cpu_us_per_call": client_cpu, "clients": args.clients}


async def verify(url: str, acknowledged: int) -> dict:
    """Every acknowledged charge is in the ledger once, and every wallet reconciles."""
    from services.wallet.storage import reconcile

    conn = await asyncpg.connect(url)
    try:
        # Seeded history (common.seed_ledger) is not part of the run.
        charges = await conn.fetchval(
            "SELECT count(*) FROM wallet.entries WHERE kind = 'charge' AND reference <> 'history'"
        )
        # Entries committed together share their inserting transaction id: how well group commit coalesced.
        commits = await conn.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM wallet.entries WHERE kind = 'charge' AND reference <> 'history'"
        )
        problems = {name: len(rows) for name, rows in (await reconcile(conn)).items() if rows}
    finally:
        await conn.close()
    return {"charges_in_ledger": charges, "acknowledged": acknowledged, "reconcile_problems": problems,
            "commits": commits, "charges_per_commit": charges / max(1, commits),
            "ok": charges == acknowledged and not problems}


async def _read_balances(targets: list[str], wallets: list[str], clients: int, seconds: float,
                         profile: profiles.Profile) -> dict:
    """GetWallet on random wallets, closed loop: the balance read a contractor's dashboard makes (through the
    gateway)."""
    latencies: list[float] = []
    async with _channel(targets, profile, "gateway") as channel:
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        rnd = random.Random(1)

        async def client(until: float, keep: bool) -> None:
            while time.perf_counter() < until:
                started = time.perf_counter()
                await stub.GetWallet(pb.GetWalletRequest(contractor_id=rnd.choice(wallets)), timeout=30)
                if keep:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(time.perf_counter() + 0.5, False) for _ in range(clients)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client(started + seconds, True) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"reads_per_s": len(latencies) / elapsed, "p50_ms": common.percentile(latencies, 50) * 1000,
            "p99_ms": common.percentile(latencies, 99) * 1000, "clients": clients}


async def charge_phase(servers: common.Stack, args: argparse.Namespace, *, env: dict[str, str] | None = None,
                       redis_db: int = 0, label: str = "", profile: profiles.Profile = profiles.BARE) -> dict:
    """Wallet server(s) in a scratch database of their own: top-ups, seeded history, charges, ledger check,
    then (args.read_seconds > 0) balance reads. Returns the figures; `env` adds variables for the wallet
    processes (e.g. OTEL_TRACES_EXPORTER; a console exporter's output is dropped)."""
    run_id = uuid.uuid4().hex[:8]
    figures: dict = {"run_id": run_id, "clients": args.clients, "wallets": args.wallets, "seconds": args.seconds,
                     "wallet_processes": args.processes, "history_per_wallet": args.history,
                     "background_wallets": args.background_wallets}
    async with common.scratch_database(servers.database_url, "bench_wallet") as wallet_db:
        ports = [common.free_port() for _ in range(args.processes)]
        service_env = {
            "CALLERSYNC_DATABASE_URL": wallet_db,
            "CALLERSYNC_REDIS_URL": servers.redis_for(redis_db),
            # Keys live long enough for any retry in the run; short so a shared Redis is not filled.
            "CALLERSYNC_IDEMPOTENCY_RETENTION_S": "900",
            **profile.service_env("wallet"),
            **(env or {}),
        }
        if args.pool_size:
            service_env["CALLERSYNC_DB_POOL_SIZE"] = str(args.pool_size)
        quiet = subprocess.DEVNULL if service_env.get("OTEL_TRACES_EXPORTER") == "console" else None
        targets = [f"127.0.0.1:{p}" for p in ports]
        with contextlib.ExitStack() as stack:
            server_pids = [
                stack.enter_context(profiles.serve_subprocess("wallet", service_env, port, profile,
                                                              args.server_tree, stdout=quiet)).pid
                for port in ports
            ]
            wallets = [f"bench-{run_id}-{i:05d}" for i in range(args.wallets)]
            await _top_up(targets, wallets, run_id, profile)
            background = [f"bg-{run_id}-{i:06d}" for i in range(args.background_wallets)]
            seeded = await common.seed_ledger(wallet_db, wallets, args.history, run_id)
            seeded += await common.seed_ledger(wallet_db, background, 2, run_id)
            figures["ledger_entries_before"] = seeded + len(wallets)
            print(f"{label}topped up {len(wallets)} wallets, {seeded} seeded ledger entries; charging with "
                  f"{args.clients} clients for {args.seconds}s after {args.warmup}s warm-up ...", flush=True)
            charges = await asyncio.to_thread(run_charges, targets, wallets, args, run_id, server_pids,
                                              await common.backend_pids(wallet_db), False, profile)
            figures["load_during_charges"] = common.cpu_load()
            if args.read_seconds:
                figures["balance_reads"] = await _read_balances(targets, wallets, 16, args.read_seconds, profile)
            figures["peak_memory_mb"] = {"wallet": max(common.peak_memory_mb(pid) for pid in server_pids)}
        figures.update({k: v for k, v in charges.items() if k != "acknowledged"})
        figures["verify"] = await verify(wallet_db, charges["acknowledged"])
    verified = figures["verify"]
    print(f"{label}charges/s {charges['charges_per_s']:.0f}  p50 {charges['p50_ms']:.1f} ms  "
          f"p99 {charges['p99_ms']:.1f} ms  errors {charges['errors'] or 'none'}\n"
          f"  CPU per charge: wallet {charges['wallet_cpu_us_per_charge']:.0f} us, "
          f"its PostgreSQL backends {charges['postgres_cpu_us_per_charge']:.0f} us, "
          f"load generator {charges['client_cpu_us_per_charge']:.0f} us; "
          f"{verified['charges_per_commit']:.1f} charges/commit; "
          f"ledger check {'ok' if verified['ok'] else 'FAILED ' + str(verified)}",
          flush=True)
    if "balance_reads" in figures:
        reads = figures["balance_reads"]
        print(f"  GetWallet ({reads['clients']} clients): {reads['reads_per_s']:.0f}/s  p50 {reads['p50_ms']:.1f} ms"
              f"  p99 {reads['p99_ms']:.1f} ms", flush=True)
    return figures


async def durable_settings(servers: common.Stack) -> dict:
    """The server's commit settings; refuses to go on unless every commit is durable."""
    settings = await common.server_settings(servers.database_url)
    settings["embedded"] = servers.embedded
    if settings["synchronous_commit"] != "on" or settings["fsync"] != "on":
        raise SystemExit(f"refusing to benchmark without durable commits: {settings}")
    return settings


async def main_async(args: argparse.Namespace) -> dict:
    figures: dict = {"bench": "wallet_charge", "client_processes": args.client_procs,
                     "server": "subprocess (python -m services.cli serve wallet)",
                     "server_tree": str(args.server_tree)}
    with common.stack() as servers, (profiles.production() if args.production else
                                     contextlib.nullcontext(profiles.BARE)) as profile:
        figures["postgres"] = pg = await durable_settings(servers)
        print(f"PostgreSQL {pg['server_version']} ({'embedded' if servers.embedded else 'given'}),"
              f" synchronous_commit={pg['synchronous_commit']}; {common.cpu_load()}", flush=True)
        figures["load_before"] = common.cpu_load()
        figures.update(await charge_phase(servers, args, profile=profile))
        figures["telemetry"] = profile.telemetry_counts()
        if not args.skip_pgbench:
            figures.update(await measure_pgbench(servers.database_url, args.pgbench_seconds))
            figures["ratio"] = figures["charges_per_s"] / figures["pgbench_tps_best"]
            print(f"ratio charges/s / pgbench tps (denominator: the better pgbench run, "
                  f"{figures['pgbench_denominator']}, {figures['pgbench_tps_best']:.0f} tps) = "
                  f"{figures['ratio']:.2f}  (target >= 0.8)", flush=True)
        figures["load_after"] = common.cpu_load()
    return figures


async def measure_pgbench(admin_url: str, seconds: int, scale: int = 10) -> dict:
    """pgbench's TPC-B-like script (`-i -s scale`) at 8 and 64 clients in a scratch database on the same server."""
    figures: dict = {"pgbench_scale": scale, "pgbench_seconds": seconds}
    async with common.scratch_database(admin_url, "bench_pgbench") as pgbench_db:
        await asyncio.to_thread(common.pgbench_init, pgbench_db, scale)
        for clients in (8, 64):
            result = await asyncio.to_thread(common.pgbench_run, pgbench_db, clients, 2, seconds)
            figures[f"pgbench_tps_c{clients}"] = result.tps
            figures[f"pgbench_latency_avg_ms_c{clients}"] = result.latency_avg_ms
            print(f"pgbench TPC-B-like -c {clients} -j 2 -T {seconds} -M prepared: "
                  f"{result.tps:.0f} tps (latency avg {result.latency_avg_ms:.1f} ms)", flush=True)
    best = max((8, 64), key=lambda c: figures[f"pgbench_tps_c{c}"])
    figures["pgbench_denominator"] = f"-c {best}"
    figures["pgbench_tps_best"] = figures[f"pgbench_tps_c{best}"]
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 s runs instead of 15 s")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=None, help="measured time (default 15, quick 5)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured first (default 3, quick 1)")
    parser.add_argument("--pgbench-seconds", type=int, default=None, help="each pgbench run (15, quick 5)")
    parser.add_argument("--processes", type=int, default=1, help="wallet server processes")
    parser.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--pool-size", type=int, default=0, help="CALLERSYNC_DB_POOL_SIZE for the wallet")
    parser.add_argument("--server-tree", type=pathlib.Path, default=common.ROOT,
                        help="checkout whose wallet runs (a worktree of an older commit, for before/after)")
    parser.add_argument("--skip-pgbench", action="store_true", help="charges only (no ratio)")
    parser.add_argument("--history", type=int, default=0, help="ledger entries seeded per charged wallet first")
    parser.add_argument("--background-wallets", type=int, default=0,
                        help="more wallets (2 seeded entries each) that are never charged")
    parser.add_argument("--read-seconds", type=float, default=0, help="GetWallet reads after the charges")
    parser.add_argument("--production", action="store_true",
                        help="the production profile (mTLS, OTLP tracing and metrics, INFO logs): bench/profiles.py")
    args = parser.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds or (5.0 if quick else 15.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.pgbench_seconds = args.pgbench_seconds or (5 if quick else 15)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    figures = asyncio.run(main_async(args))
    path = common.write_result("wallet_charge", figures)
    print(f"results written to {path.relative_to(common.ROOT)}")
    print(json.dumps(figures, sort_keys=True))
    if not figures["verify"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    main()
