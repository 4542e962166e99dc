"""Faults injected while money is moving, on servers of the test's own (embedded PostgreSQL and Valkey
that the test may restart). After each: every operation sent is in the ledger exactly once, balances equal
their ledgers, and `callersync reconcile` passes. Each test prints what it injected and what it saw."""

from __future__ import annotations

import asyncio
import signal
import uuid

import asyncpg
import grpc
import redis.asyncio as redis

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from tests.faults.load import MoneyLoad, seed_wallets, verify_exactly_once
from tests.system.processes import callersync_env, run_cli


async def run_with_fault(stack, inject, label: str, **options):
    contractors = [f"fault-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    await seed_wallets(stack, contractors)
    load = MoneyLoad(stack, contractors, **options)
    task = asyncio.ensure_future(load.run())
    await load.started.wait()
    in_flight = load.in_flight()
    await inject()
    assert not task.done(), "the fault must land while the load is still running"
    load.fault_done.set()
    outcome = await task
    conn = await asyncpg.connect(stack.database_url)
    try:
        await verify_exactly_once(conn, outcome, contractors)
    finally:
        await conn.close()
    reconciled = run_cli("reconcile", env=callersync_env(CALLERSYNC_DATABASE_URL=stack.database_url))
    assert reconciled.returncode == 0, reconciled.stdout
    print(f"\n[{label}] injected with {in_flight} calls in flight; {len(outcome.applied)} operations applied "
          f"exactly once after {outcome.retries} retries {outcome.failed_attempts}; reconcile ok")
    return outcome


async def test_sigkill_the_wallet_mid_load_and_restart_it(stack):
    async def inject():
        stack.processes["wallet"].popen.send_signal(signal.SIGKILL)
        stack.processes["wallet"].popen.wait()
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, stack.start, "wallet")

    outcome = await run_with_fault(stack, inject, "SIGKILL wallet")
    assert outcome.retries > 0, "the kill landed while calls were in flight"


async def test_restart_postgresql_mid_load(stack, own_servers):
    pg = own_servers[0]

    async def inject():
        await asyncio.get_running_loop().run_in_executor(None, pg.restart)

    outcome = await run_with_fault(stack, inject, "PostgreSQL restart")
    assert outcome.failed_attempts.get("UNAVAILABLE", 0) + outcome.failed_attempts.get("ABORTED", 0) > 0
    assert "UNKNOWN" not in outcome.failed_attempts


async def test_flushall_and_restart_redis_mid_load(stack, own_servers):
    vk = own_servers[1]

    async def inject():
        client = redis.Redis.from_url(own_servers[3])
        await client.flushall()
        await client.aclose()
        await asyncio.get_running_loop().run_in_executor(None, vk.stop)
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, vk.start)

    await run_with_fault(stack, inject, "Redis FLUSHALL + restart")


async def test_deadlines_shorter_than_the_work_and_cancelled_calls_leave_nothing_half_written(stack):
    contractor = f"fault-{uuid.uuid4().hex[:8]}"
    await seed_wallets(stack, [contractor])
    keys = [f"short-{uuid.uuid4().hex}" for _ in range(40)]
    async with stack.channel("wallet", "billing") as channel:
        wallet = wallet_pb2_grpc.WalletServiceStub(channel)

        def charge(key, timeout):
            return wallet.Charge(pb.ChargeRequest(contractor_id=contractor, amount_cents=300, idempotency_key=key),
                                 timeout=timeout)

        expired = 0
        for i, key in enumerate(keys):
            if i % 2:
                call = charge(key, 30)
                await asyncio.sleep(0)
                call.cancel()
            else:
                try:
                    await charge(key, 0.0005)
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    expired += 1
        conn = await asyncpg.connect(stack.database_url)
        try:
            landed = await conn.fetchval(
                "SELECT count(*) FROM wallet.entries WHERE idempotency_key = ANY($1::text[])", keys)
            # Whatever landed landed whole; retrying every key with a patient deadline applies each once.
            for key in keys:
                await charge(key, 10)
            rows = await conn.fetch(
                "SELECT idempotency_key, amount_cents FROM wallet.entries WHERE idempotency_key = ANY($1::text[])",
                keys)
            assert sorted(r["idempotency_key"] for r in rows) == sorted(keys)
            assert all(r["amount_cents"] == -300 for r in rows)
            balance = await conn.fetchval("SELECT balance_cents FROM wallet.wallets WHERE contractor_id = $1",
                                          contractor)
            assert balance == 100_000 - 300 * len(keys)
        finally:
            await conn.close()
    print(f"\n[deadlines/cancels] {expired} calls expired, {len(keys) // 2} cancelled, {landed} had landed "
          f"before the retry; after retries each of {len(keys)} keys applied once")
