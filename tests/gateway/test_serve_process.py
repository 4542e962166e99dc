"""`callersync serve gateway` as a real process: serves HTTP, proxies to the wallet, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from tests.conftest import free_port
from tests.gateway.conftest import SIGNING_KEY, bearer, token


async def test_serve_gateway_runs_until_sigterm(http, wallet_target, contractor):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERSYNC_")}
    env.update(
        CALLERSYNC_WALLET_TARGET=wallet_target,
        CALLERSYNC_JWT_SECRET=SIGNING_KEY,
        CALLERSYNC_SHUTDOWN_GRACE_S="2",
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "gateway", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        while not any(f"gateway listening on 127.0.0.1:{port}" in line for line in seen):
            seen.append(await asyncio.to_thread(child.stdout.readline))
            assert seen[-1] and len(seen) < 50, "".join(seen)  # log lines may come first
        async with http.get(f"http://127.0.0.1:{port}/healthz") as reply:
            assert reply.status == 200
        headers = bearer(token("contractor", contractor))
        async with http.get(f"http://127.0.0.1:{port}/v1/wallets/{contractor}", headers=headers) as reply:
            assert reply.status == 404  # the real wallet answered NOT_FOUND for a wallet never topped up
            assert (await reply.json())["details"][0]["reason"] == "NO_WALLET"
        child.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(child.wait, 10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
