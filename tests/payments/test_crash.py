"""The wallet SIGKILLed between the provider's word that a payment succeeded and our credit (and, for an auto
top-up, between the off-session charge and our record of it): after a restart the payment is credited exactly
once, and the provider holds one PaymentIntent for it."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from tests.conftest import free_port, fresh_database
from tests.payments.conftest import API_KEY, credits, eventually
from tests.system.processes import callersync_env, run_cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


class WalletProcess:
    def __init__(self, database_url: str, redis_url: str, stripe_url: str, fault_file: pathlib.Path) -> None:
        self.port = free_port()
        env = dict(os.environ, CALLERSYNC_DATABASE_URL=database_url, CALLERSYNC_REDIS_URL=redis_url,
                   CALLERSYNC_WALLET_PORT=str(self.port), CALLERSYNC_FAULT_FILE=str(fault_file),
                   CALLERSYNC_STRIPE_API_KEY=API_KEY, CALLERSYNC_STRIPE_API_BASE=stripe_url,
                   CALLERSYNC_PAYMENT_SWEEP_INTERVAL_MS="100", CALLERSYNC_PAYMENT_SWEEP_AFTER_MS="300",
                   CALLERSYNC_AUTO_TOP_UP_LEASE_MS="1000", CALLERSYNC_LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "wallet"], env=env, cwd=ROOT)
        self.target = f"127.0.0.1:{self.port}"

    async def healthy(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            for _ in range(200):
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                assert self.proc.poll() is None, "the wallet exited while starting"
                await asyncio.sleep(0.1)
        raise AssertionError("the wallet did not become healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def call(target: str, method: str, request):  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(target) as channel:
        return await getattr(wallet_pb2_grpc.WalletServiceStub(channel), method)(request, timeout=10)


async def test_sigkill_between_the_providers_success_and_our_credit_credits_exactly_once(
    servers, quiet_stripe, tmp_path, db, contractor
):
    url = await fresh_database(servers)
    fault = tmp_path / "crash-before-credit"
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    first = WalletProcess(url, servers.redis_url, quiet_stripe.url, fault)
    try:
        await first.healthy()
        started = await call(first.target, "StartTopUp", pb.StartTopUpRequest(
            contractor_id=contractor, amount_cents=5000, idempotency_key=f"crash-{contractor}"))
        fault.touch()
        assert quiet_stripe.pay(started.top_up.payment_intent_id)["status"] == "succeeded"
        # The sweeper learns of the success and dies before crediting.
        assert await asyncio.to_thread(first.proc.wait, 20) == -signal.SIGKILL
        assert not fault.exists()
        assert await credits(pool, contractor) == []
    finally:
        first.stop()
    second = WalletProcess(url, servers.redis_url, quiet_stripe.url, fault)
    try:
        await second.healthy()
        await eventually(lambda: _credited(pool, contractor))
        again = await call(second.target, "ApplyPaymentEvent",
                           pb.ApplyPaymentEventRequest(object_id=started.top_up.payment_intent_id))
        assert again.outcome == pb.PAYMENT_EVENT_OUTCOME_ALREADY_CREDITED
        await asyncio.sleep(0.5)
        rows = await credits(pool, contractor)
        assert [(r["amount_cents"], r["reference"]) for r in rows] == [(5000, started.top_up.payment_intent_id)]

        # Auto top-up: killed after the off-session charge, before we recorded its PaymentIntent.
        other = f"{contractor}-auto"
        await call(second.target, "TopUp", pb.TopUpRequest(
            contractor_id=other, amount_cents=10_000, payment_reference=f"open-{other}",
            idempotency_key=f"open-{other}", reason="opening credit"))
        setup = await call(second.target, "StartCardSetup", pb.StartCardSetupRequest(contractor_id=other))
        quiet_stripe.save_card(setup.setup_intent_id)
        await call(second.target, "SetAutoTopUp", pb.SetAutoTopUpRequest(
            contractor_id=other, enabled=True, threshold_cents=5000, amount_cents=5000, max_per_day_cents=50_000,
            email=f"{other}@example.com"))
        fault.touch()
        await call(second.target, "Charge", pb.ChargeRequest(contractor_id=other, amount_cents=6000,
                                                             idempotency_key=f"c-{other}"))
        assert await asyncio.to_thread(second.proc.wait, 20) == -signal.SIGKILL
    finally:
        second.stop()
    third = WalletProcess(url, servers.redis_url, quiet_stripe.url, fault)
    try:
        await third.healthy()
        await eventually(lambda: _credited(pool, other, source="card"), timeout_s=20)
        await asyncio.sleep(1.5)  # past another lease: no second charge
        card_credits = [r for r in await credits(pool, other) if r["credit_source"] == "card"]
        assert [r["amount_cents"] for r in card_credits] == [5000]
        top_up_id = await pool.fetchval("SELECT top_up_id FROM wallet.top_ups WHERE contractor_id = $1", other)
        made = [p for p in quiet_stripe.client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
                if p.metadata.to_dict().get("top_up_id") == str(top_up_id)]
        assert len(made) == 1, "the retry charged the card a second time"
    finally:
        third.stop()
        await pool.close()
    result = run_cli("reconcile", env=callersync_env(CALLERSYNC_DATABASE_URL=url, CALLERSYNC_STRIPE_API_KEY=API_KEY,
                                                     CALLERSYNC_STRIPE_API_BASE=quiet_stripe.url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconcile: ok" in result.stdout


async def _credited(pool, contractor, source="card"):
    rows = [r for r in await credits(pool, contractor) if r["credit_source"] == source]
    return rows or None
