"""SIGTERM to a serving wallet: calls already in flight finish and commit, new calls are turned away,
and the process exits by itself within the grace period."""

import asyncio
import signal
import time

import asyncpg
import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from tests.conftest import free_port
from tests.system.processes import Process, callersync_env
from tests.wallet.support import ledger


async def test_sigterm_lets_in_flight_charges_finish_and_refuses_new_ones(database_url, servers, contractor, db):
    port = free_port()
    env = callersync_env(
        CALLERSYNC_DATABASE_URL=database_url,
        CALLERSYNC_REDIS_URL=servers.redis_url,
        CALLERSYNC_WALLET_PORT=str(port),
        CALLERSYNC_SHUTDOWN_GRACE_S="10",
    )
    serving = Process("serve", "wallet", env=env)
    try:
        serving.wait_for("wallet listening", timeout=60)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            wallet = wallet_pb2_grpc.WalletServiceStub(channel)
            await wallet.TopUp(pb.TopUpRequest(reason="operator credit", contractor_id=contractor, amount_cents=10_000,
                                               payment_reference=f"{contractor}-t", idempotency_key=f"{contractor}-t"))
            # Hold the wallet's row lock so the charges are provably still in flight when SIGTERM lands.
            blocker = await asyncpg.connect(database_url)
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT 1 FROM wallet.wallets WHERE contractor_id = $1 FOR UPDATE", contractor)
            in_flight = [
                asyncio.ensure_future(wallet.Charge(pb.ChargeRequest(
                    contractor_id=contractor, amount_cents=100, idempotency_key=f"{contractor}-{i}"), timeout=30))
                for i in range(5)
            ]
            await asyncio.sleep(1.0)
            assert not any(f.done() for f in in_flight)
            signalled = time.monotonic()
            serving.popen.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            late = await asyncio.gather(
                wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor), timeout=5), return_exceptions=True
            )
            await tx.rollback()
            await blocker.close()
            replies = await asyncio.gather(*in_flight)
        assert all(r.entry.amount_cents == -100 for r in replies)
        assert isinstance(late[0], grpc.aio.AioRpcError)
        assert late[0].code() == grpc.StatusCode.UNAVAILABLE
        exit_code = await asyncio.get_running_loop().run_in_executor(None, serving.popen.wait, 15)
        assert exit_code == 0, serving.output()
        assert time.monotonic() - signalled < 12
        assert await ledger(db, contractor) == (9500, 6, 9500)
    finally:
        serving.kill()
