"""The whole system under mutual TLS, as real processes each presenting its own certificate: the demo's day
(operator and telephony-engine calls, billing settling with the wallet, routing reserving) runs and reconciles,
a fault test (SIGKILL the wallet mid-load) still applies every operation exactly once, and what is refused is
refused by the real processes. The fault and fuzz tests run under mutual TLS too (tests/system/stack.py's
use_mtls; CALLERSYNC_TEST_MTLS=1 adds the demo's own stack)."""

import asyncio
import json
import re
import signal
import urllib.parse

import aiohttp
import grpc
import pytest
import redis.asyncio as redis

from callersync.wallet.v1 import wallet_pb2, wallet_pb2_grpc
from services.runtime.interceptors import error_reason
from tests.conftest import free_port, fresh_database
from tests.faults.test_faults import run_with_fault
from tests.gateway.conftest import SIGNING_KEY, bearer, token
from tests.system.processes import Process, callersync_env, run_cli
from tests.system.stack import start_stack, tls_env


@pytest.fixture(scope="module")
async def stack(servers):
    url = await fresh_database(servers)
    redis_url = urllib.parse.urlsplit(servers.redis_url)._replace(path="/7").geturl()  # this module's own db
    client = redis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    running = start_stack(url, redis_url, mtls=True)
    yield running
    running.stop()


def test_the_demo_day_runs_and_reconciles_under_mutual_tls(stack):
    done = run_cli("demo", "--seed", "11", env=stack.env, timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"^calls: 40 arrived, [1-9]\d* billable", done.stdout, re.MULTILINE), out
    assert re.search(r"^reconcile: ok \(", done.stdout, re.MULTILINE), out
    assert "PERMISSION_DENIED" not in out


def test_the_demo_without_the_engine_certificate_is_refused_by_name(stack):
    """The operator's certificate alone may set up the day but not route or report calls."""
    env = {k: v for k, v in stack.env.items() if not k.startswith("CALLERSYNC_DEMO_ENGINE_")}
    done = run_cli("demo", "--contractors", "3", "--calls", "16", env=env, timeout=180)
    assert done.returncode != 0
    assert "spiffe://callersync.local/operator/tests may not call /callersync.routing.v1.RoutingService/RouteCall" \
        in done.stdout + done.stderr


async def test_sigkill_the_wallet_mid_load_under_mutual_tls(stack):
    async def inject():
        stack.processes["wallet"].popen.send_signal(signal.SIGKILL)
        stack.processes["wallet"].popen.wait()
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, stack.start, "wallet")

    outcome = await run_with_fault(stack, inject, "SIGKILL wallet under mTLS", workers=8, ops_per_worker=20)
    assert outcome.retries > 0
    assert "PERMISSION_DENIED" not in outcome.failed_attempts


async def test_the_real_wallet_refuses_and_logs_an_identity_outside_its_table(stack):
    request = wallet_pb2.ReserveRequest(contractor_id="ctr-nobody", call_id="c-1", amount_cents=100)
    async with stack.channel("wallet", "billing") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await wallet_pb2_grpc.WalletServiceStub(channel).Reserve(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(info.value) == "CALLER_NOT_ALLOWED"
    assert "spiffe://callersync.local/billing may not call /callersync.wallet.v1.WalletService/Reserve: it is " \
           "for routing" in info.value.details()
    logged = stack.processes["wallet"]
    for _ in range(50):
        if "permission denied" in logged.output():
            break
        await asyncio.sleep(0.1)
    line = next(line for line in logged.output().splitlines() if "permission denied" in line)
    assert "spiffe://callersync.local/billing" in line and "Reserve" in line and "WARNING" in line
    request_id = dict(info.value.trailing_metadata())["x-request-id"]
    assert json.loads(line)["request_id"] == request_id


async def test_a_plaintext_client_is_refused_by_the_real_processes(stack):
    for service in ("wallet", "billing", "routing"):
        async with grpc.aio.insecure_channel(stack.target(service)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await wallet_pb2_grpc.WalletServiceStub(channel).GetWallet(
                    wallet_pb2.GetWalletRequest(contractor_id="x"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_gateway_calls_upstream_with_its_own_certificate(stack):
    port = free_port()
    env = stack.env | tls_env(stack.pki, "gateway") | {
        "CALLERSYNC_GATEWAY_PORT": str(port), "CALLERSYNC_JWT_SECRET": SIGNING_KEY}
    gateway = Process("serve", "gateway", env=env)
    try:
        gateway.wait_for("gateway listening", timeout=60)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as reply:
                assert reply.status == 200, await reply.text()
            # Reached the wallet as spiffe://.../gateway, which may GetWallet: NOT_FOUND, not PERMISSION_DENIED.
            async with http.get(f"http://127.0.0.1:{port}/v1/wallets/ctr-nobody",
                                headers=bearer(token("operator"))) as reply:
                assert reply.status == 404, await reply.text()
                assert (await reply.json())["details"][0]["reason"] == "NO_WALLET"
    finally:
        gateway.kill()


def test_a_service_refuses_to_listen_beyond_loopback_in_plaintext(tmp_path):
    env = callersync_env(CALLERSYNC_HOST="0.0.0.0", CALLERSYNC_WALLET_PORT=str(free_port()),
                         CALLERSYNC_DATABASE_URL="postgresql://127.0.0.1:1/none", CALLERSYNC_REDIS_URL="redis://x")
    done = run_cli("serve", "wallet", env=env, timeout=60)
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0 without TLS" in done.stderr + done.stdout
    # Said explicitly, it starts (and then stops at the missing database, which is past the check).
    insecure = run_cli("serve", "wallet", env=env | {"CALLERSYNC_INSECURE_LISTEN": "1"}, timeout=60)
    assert "refusing to listen" not in insecure.stderr + insecure.stdout
    assert "WITHOUT TLS" in insecure.stderr + insecure.stdout


def test_callersync_certs_writes_a_ca_and_one_certificate_per_identity(tmp_path):
    done = run_cli("certs", "--out", str(tmp_path), "--identities", "wallet", "operator/alice",
                   env=callersync_env(CALLERSYNC_TRUST_DOMAIN="example.test"), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "spiffe://example.test/operator/alice" in done.stdout
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ca-key.pem", "ca.pem", "operator-alice-key.pem", "operator-alice.pem", "wallet-key.pem",
                     "wallet.pem"]
    assert oct((tmp_path / "wallet-key.pem").stat().st_mode & 0o777) == "0o600"
    bad = run_cli("certs", "--out", str(tmp_path), "--identities", "intruder", env=callersync_env(), timeout=60)
    assert bad.returncode == 2 and "is no identity" in bad.stderr


