"""Billing SIGKILLed between its wallet call and its own commit: a re-send, or the sweeper, settles once."""

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import grpc
import pytest

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import billing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.runtime.health import wait_serving
from tests.billing.calls import call, connected
from tests.billing.support import set_rate, unique_zip
from tests.conftest import free_port
from tests.wallet.support import ledger, top_up

ROOT = pathlib.Path(__file__).resolve().parents[2]


class BillingProcess:
    def __init__(self, database_url, redis_url, wallet_target, fault_file, sweep_after_ms):
        self.port = free_port()
        env = dict(os.environ, CALLERSYNC_DATABASE_URL=database_url, CALLERSYNC_REDIS_URL=redis_url,
                   CALLERSYNC_WALLET_TARGET=wallet_target, CALLERSYNC_BILLING_PORT=str(self.port),
                   CALLERSYNC_FAULT_FILE=str(fault_file), CALLERSYNC_SETTLEMENT_SWEEP_INTERVAL_MS="100",
                   CALLERSYNC_SETTLEMENT_SWEEP_AFTER_MS=str(sweep_after_ms), CALLERSYNC_LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "billing"], env=env, cwd=ROOT)
        self.target = f"127.0.0.1:{self.port}"

    async def healthy(self):
        if not await wait_serving(self.target, 60, lambda: self.proc.poll() is None):
            assert self.proc.poll() is None, "billing exited while starting"
            raise AssertionError("billing did not become healthy")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def rate(target, c):
    async with grpc.aio.insecure_channel(target) as channel:
        return await billing_pb2_grpc.BillingServiceStub(channel).RateCall(pb.RateCallRequest(call=c), timeout=10)


async def killed_while_settling(database_url, servers, wallet_target, fault_file, c):
    """Sends c to a billing process that dies between the wallet's capture and its own commit."""
    process = BillingProcess(database_url, servers.redis_url, wallet_target, fault_file, 3_600_000)
    try:
        await process.healthy()
        fault_file.touch()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rate(process.target, c)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.to_thread(process.proc.wait, 10) == -signal.SIGKILL
        assert not fault_file.exists()
    finally:
        process.stop()


async def test_sigkill_between_wallet_call_and_commit_settles_exactly_once(
    billing, wallet, db, database_url, servers, wallet_target, contractor
):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    await top_up(wallet, contractor, 20_000)
    fault_file = pathlib.Path(tempfile.mkdtemp()) / "crash-now"
    first, second = (call(connected(contractor, 60.0), zip_code=zip_code) for _ in range(2))
    for c in (first, second):
        c.legs[0].reservation_id = (await wallet.Reserve(wpb.ReserveRequest(
            contractor_id=contractor, call_id=c.call_id, amount_cents=4500))).reservation.reservation_id

    # 1. Killed after the capture: the wallet moved the money, billing's row still says 'settling'.
    await killed_while_settling(database_url, servers, wallet_target, fault_file, first)
    assert await ledger(db, contractor) == (15_500, 2, 15_500)
    assert await db.fetchval("SELECT state FROM billing.rated_calls WHERE call_id = $1", first.call_id) == "settling"

    # A restarted billing (sweeper held back) and a re-send: the stored decision, the same single capture.
    restarted = BillingProcess(database_url, servers.redis_url, wallet_target, fault_file, 3_600_000)
    try:
        await restarted.healthy()
        reply = await rate(restarted.target, first)
        again = await rate(restarted.target, first)
    finally:
        restarted.stop()
    assert reply.replayed and again.decision == reply.decision
    assert reply.decision.billable and reply.decision.price_cents == 4500
    assert await ledger(db, contractor) == (15_500, 2, 15_500)
    captured = (await wallet.ListCallReservations(wpb.ListCallReservationsRequest(call_id=first.call_id))).reservations
    assert captured[0].capture_entry_id == reply.decision.wallet_entry_id

    # 2. Killed again on another call, and nobody re-sends: the sweeper of the restarted process settles it.
    await killed_while_settling(database_url, servers, wallet_target, fault_file, second)
    sweeping = BillingProcess(database_url, servers.redis_url, wallet_target, fault_file, 0)
    try:
        await sweeping.healthy()
        for _ in range(100):
            state = await db.fetchval("SELECT state FROM billing.rated_calls WHERE call_id = $1", second.call_id)
            if state == "settled":
                break
            await asyncio.sleep(0.1)
        assert state == "settled"
        reply = await rate(sweeping.target, second)
    finally:
        sweeping.stop()
    assert reply.replayed and reply.decision.wallet_entry_id
    assert await ledger(db, contractor) == (11_000, 3, 11_000)
    assert await db.fetchval("SELECT count(*) FROM billing.charges WHERE contractor_id = $1", contractor) == 2
