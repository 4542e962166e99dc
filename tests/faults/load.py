"""A money workload that keeps going through faults: every operation has its own idempotency key and is
retried with that same key until it succeeds, the way the call-routing engine and billing retry. Afterwards
the ledger must hold each operation exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


@dataclasses.dataclass
class Outcome:
    applied: dict[str, int] = dataclasses.field(default_factory=dict)  # idempotency key -> signed cents
    retries: int = 0
    failed_attempts: dict[str, int] = dataclasses.field(default_factory=dict)  # status name -> count
    max_in_flight: int = 0

    def note_failure(self, code: grpc.StatusCode) -> None:
        self.failed_attempts[code.name] = self.failed_attempts.get(code.name, 0) + 1


class MoneyLoad:
    """workers × ops_per_worker wallet operations (top-ups and charges) over `contractors` wallets."""

    def __init__(self, stack, contractors: list[str], workers: int = 16, ops_per_worker: int = 40,
                 also_retry: frozenset[grpc.StatusCode] = frozenset()) -> None:
        self.stack = stack
        # Codes retried although they should never happen, so a known bug does not hide the ledger checks; they
        # are still counted in failed_attempts.
        self.retryable = RETRYABLE | also_retry
        self.contractors = contractors
        self.workers = workers
        self.ops_per_worker = ops_per_worker
        self.outcome = Outcome()
        self._in_flight = 0
        self.started = asyncio.Event()
        # Set once the fault has been injected: every worker keeps going until then, and a few operations
        # beyond, so the fault always lands mid-load however fast the machine is.
        self.fault_done = asyncio.Event()

    async def run(self, give_up_after_s: float = 90) -> Outcome:
        # Top-ups as an operator, charges as billing: under mutual TLS each is the only identity allowed.
        async with self.stack.channel("wallet") as operator, self.stack.channel("wallet", "billing") as billing:
            wallets = (wallet_pb2_grpc.WalletServiceStub(operator), wallet_pb2_grpc.WalletServiceStub(billing))
            deadline = time.monotonic() + give_up_after_s
            await asyncio.gather(*(self._worker(wallets, w, deadline) for w in range(self.workers)))
        return self.outcome

    async def _worker(self, wallets, w: int, deadline: float) -> None:
        wallet, settler = wallets
        i = after_fault = 0
        while i < self.ops_per_worker or after_fault < 5:
            if self.fault_done.is_set():
                after_fault += 1
            contractor = self.contractors[(w + i) % len(self.contractors)]
            key = f"load-{uuid.uuid4().hex}"
            if i % 3 == 0:
                def call(contractor=contractor, key=key):
                    return wallet.TopUp(pb.TopUpRequest(
                        reason="operator credit",
                        contractor_id=contractor, amount_cents=2500, payment_reference=key, idempotency_key=key),
                        timeout=5)
                cents = 2500
            else:
                def call(contractor=contractor, key=key):
                    return settler.Charge(pb.ChargeRequest(
                        contractor_id=contractor, amount_cents=700, idempotency_key=key, reference="load"), timeout=5)
                cents = -700
            await self._until_done(call, deadline)
            self.outcome.applied[key] = cents
            self.started.set()
            i += 1

    async def _until_done(self, call, deadline: float) -> None:
        while True:
            self._in_flight += 1
            self.outcome.max_in_flight = max(self.outcome.max_in_flight, self._in_flight)
            try:
                await call()
                return
            except grpc.aio.AioRpcError as err:
                if err.code() not in self.retryable or time.monotonic() > deadline:
                    raise
                self.outcome.note_failure(err.code())
                self.outcome.retries += 1
                await asyncio.sleep(0.05)
            finally:
                self._in_flight -= 1

    def in_flight(self) -> int:
        return self._in_flight


async def seed_wallets(stack, contractors: list[str]) -> None:
    async with stack.channel("wallet") as channel:
        wallet = wallet_pb2_grpc.WalletServiceStub(channel)
        for c in contractors:
            await wallet.TopUp(pb.TopUpRequest(reason="operator credit", contractor_id=c, amount_cents=100_000,
                                               payment_reference=f"seed-{c}", idempotency_key=f"seed-{c}"), timeout=10)


async def verify_exactly_once(conn, outcome: Outcome, contractors: list[str]) -> None:
    """Each key is in the ledger once with its amount, and each wallet's balance is its ledger's sum."""
    rows = await conn.fetch(
        "SELECT idempotency_key, amount_cents FROM wallet.entries WHERE idempotency_key = ANY($1::text[])",
        list(outcome.applied),
    )
    found = {r["idempotency_key"]: r["amount_cents"] for r in rows}
    assert found == outcome.applied, f"{len(outcome.applied) - len(found)} missing, or amounts differ"
    bad = await conn.fetch(
        "SELECT w.contractor_id FROM wallet.wallets w JOIN wallet.entries e USING (contractor_id)"
        " WHERE w.contractor_id = ANY($1::text[]) GROUP BY w.contractor_id, w.balance_cents"
        " HAVING w.balance_cents <> sum(e.amount_cents)",
        contractors,
    )
    assert not bad, f"balance differs from ledger for {bad}"
