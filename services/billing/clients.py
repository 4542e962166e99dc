"""Billing's calls to other services (the wallet): one channel, a deadline on every call, retries where the key
makes them safe."""

from __future__ import annotations

import asyncio
import logging
import random

import grpc

from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime.errors import FailedPrecondition, Unavailable, typed_reason
from services.runtime.idempotency import retry_metadata
from services.runtime.interceptors import error_reason

log = logging.getLogger("callersync.billing.wallet")

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED)


class WalletRefused(Exception):
    """The wallet answered with a definite refusal (not a transient failure)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.refusal = typed_reason(wpb.WalletRefusal, "WALLET_REFUSAL_", reason)  # to switch on


class WalletClient:
    def __init__(self, channel: grpc.aio.Channel, target: str, *, timeout_s: float = 5.0, attempts: int = 5) -> None:
        self._target = target
        self._channel = channel
        self._stub = wallet_pb2_grpc.WalletServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._attempts = attempts

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request):
        """Every wallet call billing makes is idempotent (a natural key or a derived idempotency key), so a
        transient failure is retried with backoff; what still fails is UNAVAILABLE for billing's caller."""
        rpc = getattr(self._stub, method)
        delay = 0.05
        for attempt in range(1, self._attempts + 1):
            try:
                return await rpc(request, timeout=self._timeout_s, metadata=retry_metadata(attempt))
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE:
                    raise WalletRefused(err.code(), err.details() or "", error_reason(err)) from None
                if attempt == self._attempts:
                    raise Unavailable(
                        f"the wallet at {self._target} did not answer {method} ({err.code().name}: {err.details()}); "
                        "nothing is lost: the decision is stored and settles on a retry or by the sweeper",
                        reason="WALLET_UNAVAILABLE",
                    ) from None
                log.info("wallet %s: %s, retry %d", method, err.code().name, attempt)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    async def call_reservations(self, call_id: str) -> list[wpb.Reservation]:
        reply = await self._call("ListCallReservations", wpb.ListCallReservationsRequest(call_id=call_id))
        return list(reply.reservations)

    async def charge(self, contractor_id: str, amount_cents: int, key: str, reference: str,
                     description: str) -> wpb.LedgerEntry:
        try:
            reply = await self._call(
                "Charge", wpb.ChargeRequest(contractor_id=contractor_id, amount_cents=amount_cents,
                                            idempotency_key=key, reference=reference, description=description)
            )
        except WalletRefused as err:
            if err.refusal == wpb.WALLET_REFUSAL_NO_WALLET:
                raise no_wallet(contractor_id) from None
            raise
        return reply.entry

    async def settle_calls(self, items: list[wpb.CallSettlement]) -> list[wpb.CallSettlementResult]:
        """One SettleCalls for a batch; safe to retry, as every item is keyed like Capture and Charge."""
        reply = await self._call("SettleCalls", wpb.SettleCallsRequest(items=items))
        return list(reply.results)

    async def without_wallet(self, contractor_ids: list[str]) -> set[str]:
        """Which of the contractors (at most 1000) have no wallet, in one call."""
        reply = await self._call("GetRoutability", wpb.GetRoutabilityRequest(contractor_ids=contractor_ids))
        return {r.contractor_id for r in reply.routabilities if r.reason == wpb.ROUTABILITY_REASON_NO_WALLET}

    async def refund(self, entry_id: int, amount_cents: int, key: str, description: str) -> wpb.LedgerEntry:
        reply = await self._call(
            "Refund", wpb.RefundRequest(charge_entry_id=entry_id, amount_cents=amount_cents, idempotency_key=key,
                                        description=description)
        )
        return reply.entry

    async def require_wallet(self, contractor_id: str) -> None:
        try:
            await self._call("GetWallet", wpb.GetWalletRequest(contractor_id=contractor_id))
        except WalletRefused as err:
            if err.code == grpc.StatusCode.NOT_FOUND:
                raise no_wallet(contractor_id) from None
            raise

    async def entries(self, contractor_id: str, max_pages: int) -> list[wpb.LedgerEntry]:
        """The contractor's newest ledger entries, up to max_pages pages of 500."""
        out: list[wpb.LedgerEntry] = []
        token = ""
        for _ in range(max_pages):
            reply = await self._call(
                "ListEntries", wpb.ListEntriesRequest(contractor_id=contractor_id, page_size=500, page_token=token)
            )
            out += reply.entries
            token = reply.next_page_token
            if not token:
                break
        return out


def no_wallet(contractor_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"contractor {contractor_id!r} has no wallet, so the charge cannot be settled; they must top up first "
        "(nothing was recorded: send this again after the first top-up)",
        reason="NO_WALLET",
        contractor_id=contractor_id,
    )
