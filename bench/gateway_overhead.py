"""What the HTTP/JSON gateway adds: GetWallet over gRPC versus GET /v1/wallets/{id} through the gateway.

    python bench/gateway_overhead.py            # --seconds S --clients C --wallets W; --help

The wallet and the gateway run as `python -m services.cli serve` subprocesses in a scratch database. Setup
(untimed) tops up W wallets. Then C concurrent clients read random wallets for S seconds, first over gRPC,
then over HTTP with a contractor token each (so the JWT check, transcoding and scope check are paid).
Prints requests per second, p50/p99 latency and the gateway's CPU seconds per 1,000 requests."""

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

import aiohttp  # noqa: E402
import grpc  # noqa: E402

from bench import common  # noqa: E402
from callersync.wallet.v1 import wallet_pb2 as pb  # noqa: E402
from callersync.wallet.v1 import wallet_pb2_grpc  # noqa: E402
from services.gateway import tokens  # noqa: E402
from services.gateway.app import wait_healthy  # noqa: E402
from services.ops import migrate_all  # noqa: E402

KEY = "bench-gateway-key"


async def _timed(clients: int, seconds: float, one) -> tuple[float, list[float]]:
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies


def _figures(elapsed: float, latencies: list[float]) -> dict:
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(common.percentile(latencies, 50), 2),
        "p99_ms": round(common.percentile(latencies, 99), 2),
        "requests": len(latencies),
    }


async def main(args: argparse.Namespace) -> None:
    with common.stack() as stack:
        figures = await run(stack, args)
    report(figures)


async def run(stack: common.Stack, args: argparse.Namespace, redis_db: int = 0) -> dict:
    """Wallet and gateway in a scratch database of their own; returns the figures."""
    async with common.scratch_database(stack.database_url, "bench_gateway") as url:
        await migrate_all(url, ["wallet"])
        wallet_port, gateway_port = common.free_port(), common.free_port()
        env = {
            "CALLERSYNC_DATABASE_URL": url,
            "CALLERSYNC_REDIS_URL": stack.redis_for(redis_db),
            "CALLERSYNC_WALLET_TARGET": f"127.0.0.1:{wallet_port}",
            "CALLERSYNC_JWT_SECRET": KEY,
        }
        with common.serve_subprocess("wallet", env, wallet_port) as wallet_proc:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", "gateway", "--port", str(gateway_port)],
                env={**os.environ, **env, "CALLERSYNC_LOG_LEVEL": "WARNING"},
                cwd=common.ROOT,
                stdout=subprocess.DEVNULL,
            )
            try:
                if not wait_healthy("127.0.0.1", gateway_port, 30):
                    raise RuntimeError("the gateway did not start")
                figures = await _run(args, wallet_port, gateway_port, gateway.pid)
                figures["peak_memory_mb"] = {"wallet": common.peak_memory_mb(wallet_proc.pid),
                                             "gateway": common.peak_memory_mb(gateway.pid)}
                return figures
            finally:
                gateway.terminate()
                gateway.wait(timeout=20)


async def _run(args: argparse.Namespace, wallet_port: int, gateway_port: int, gateway_pid: int) -> dict:
    wallets = [f"bench-{uuid.uuid4().hex[:10]}" for _ in range(args.wallets)]
    headers = {
        w: {
            "Authorization": "Bearer "
            + tokens.mint_for(KEY.encode(), sub=w, role="contractor", contractor_id=w, ttl_s=3600)
        }
        for w in wallets
    }
    async with grpc.aio.insecure_channel(f"127.0.0.1:{wallet_port}") as channel:
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        for w in wallets:
            await stub.TopUp(
                pb.TopUpRequest(
                    reason="operator credit",
                    contractor_id=w,
                    amount_cents=10_000,
                    payment_reference=f"bench-{w}",
                    idempotency_key=f"bench-{w}",
                )
            )

        async def grpc_one() -> None:
            await stub.GetWallet(pb.GetWalletRequest(contractor_id=random.choice(wallets)), timeout=10)

        await _timed(args.clients, 1.0, grpc_one)  # warm-up
        direct = _figures(*await _timed(args.clients, args.seconds, grpc_one))

    base = f"http://127.0.0.1:{gateway_port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.clients)) as http:

        async def http_one() -> None:
            w = random.choice(wallets)
            async with http.get(f"{base}/v1/wallets/{w}", headers=headers[w]) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"gateway answered {reply.status}")

        await _timed(args.clients, 1.0, http_one)
        cpu_before = common.cpu_seconds([gateway_pid])
        elapsed, latencies = await _timed(args.clients, args.seconds, http_one)
        via_gateway = _figures(elapsed, latencies)
        via_gateway["gateway_cpu_s_per_1000"] = round(
            (common.cpu_seconds([gateway_pid]) - cpu_before) / max(1, len(latencies)) * 1000, 3
        )

    figures = {
        "clients": args.clients,
        "seconds": args.seconds,
        "wallets": args.wallets,
        "grpc_direct": direct,
        "http_via_gateway": via_gateway,
        "load": common.cpu_load(),
    }
    return figures


def report(figures: dict) -> None:
    print(f"GetWallet, {figures['clients']} clients, {figures['seconds']}s each ({figures['load']})")
    for name in ("grpc_direct", "http_via_gateway"):
        f = figures[name]
        print(
            f"  {name:17s} {f['requests_per_s']:8.1f} req/s"
            f"  p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms"
        )
    print(f"  gateway CPU: {figures['http_via_gateway']['gateway_cpu_s_per_1000']} s per 1,000 requests")
    print(f"  written to {common.write_result('gateway_overhead', figures)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--wallets", type=int, default=50)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
