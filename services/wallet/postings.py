"""Keyed money movements, each applied once: an operator's credit, a charge, a refund and a reservation's capture.

A retry is answered from the idempotency cache; storage's unique key on the movement decides the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from callersync.wallet.v1 import wallet_pb2 as pb
from services.runtime import telemetry
from services.runtime.errors import NotFound
from services.runtime.idempotency import IdempotencyCache, fingerprint
from services.wallet import ledger, mappers
from services.wallet.records import Entry, Outcome, Posted, Reservation
from services.wallet.storage import WalletStore

M = TypeVar("M", pb.TopUpResponse, pb.ChargeResponse, pb.RefundResponse)


class MovedMoney:
    """The money and entry counters of applied movements (hot_counter hands every caller the one of a name)."""

    def __init__(self) -> None:
        self._cents = telemetry.hot_counter(
            "wallet", "wallet.money_moved", unit="cents", description="cents moved by applied entries, by kind"
        )
        self._entries = telemetry.hot_counter("wallet", "wallet.entries", description="applied ledger entries, by kind")

    def count(self, kind: str, amount_cents: int) -> None:
        self._cents.add(amount_cents, {"kind": kind})
        self._entries.add(1, {"kind": kind})


def capture_hash(reservation_id: str, amount_cents: int) -> bytes:
    """The request hash of a capture: the reservation and the amount, so a capture at the same amount replays."""
    return fingerprint("Capture", pb.CaptureRequest(reservation_id=reservation_id, amount_cents=amount_cents))


class Postings:
    def __init__(self, store: WalletStore, idempotency: IdempotencyCache) -> None:
        self._store = store
        self._idempotency = idempotency
        self._moved = MovedMoney()

    async def top_up(self, request: pb.TopUpRequest, *, retry: bool) -> pb.TopUpResponse:
        """An operator's manual credit: the reason is the entry's description."""
        async def op_for(fp: bytes) -> ledger.EntryOp:
            return ledger.EntryOp(
                "top_up", request.contractor_id, request.amount_cents, request.idempotency_key, fp,
                reference=request.payment_reference, description=request.reason.strip(),
            )

        return await self._once("TopUp", request, op_for, pb.TopUpResponse, retry)

    async def charge(self, request: pb.ChargeRequest, *, retry: bool) -> pb.ChargeResponse:
        async def op_for(fp: bytes) -> ledger.EntryOp:
            return ledger.EntryOp(
                "charge", request.contractor_id, request.amount_cents, request.idempotency_key, fp,
                reference=request.reference, description=request.description,
            )

        return await self._once("Charge", request, op_for, pb.ChargeResponse, retry)

    async def refund(self, request: pb.RefundRequest, *, retry: bool) -> pb.RefundResponse:
        async def op_for(fp: bytes) -> ledger.EntryOp:
            owner = await self._store.entry_owner(request.charge_entry_id)
            if owner is None:
                raise NotFound(f"no ledger entry {request.charge_entry_id}", reason="NO_CHARGE")
            return ledger.EntryOp(
                "refund", owner, request.amount_cents, request.idempotency_key, fp,
                description=request.description, refund_of_entry_id=request.charge_entry_id,
            )

        return await self._once("Refund", request, op_for, pb.RefundResponse, retry)

    async def capture(self, reservation_id: str, amount_cents: int, description: str) -> tuple[Reservation, Entry]:
        """Settles a reservation at amount_cents: the reservation as it now stands, and the capture's entry."""
        owner = await self._store.reservation_owner(reservation_id)
        if owner is None:
            raise NotFound(f"no reservation {reservation_id}", reason="NO_RESERVATION")
        # The reservation is the natural key: it settles once, and a retry at the same amount replays.
        op = ledger.EntryOp(
            "capture", owner, amount_cents, f"capture:{reservation_id}", capture_hash(reservation_id, amount_cents),
            reference=reservation_id, description=description, reservation_id=reservation_id,
        )
        posted = await self.post(op)
        if posted.outcome == Outcome.KEY_REUSED:  # captured before, at another amount
            held = await self._store.get_reservation(reservation_id)
            assert held is not None  # reservation_owner found it above, and reservations are never deleted
            raise ledger.refusal(Outcome.RESERVATION_CAPTURED, op, held.captured_cents, held.capture_entry_id)
        if not posted.done:
            raise ledger.refusal(posted.outcome, op, posted.detail_cents, posted.entry_id)
        reservation = await self._store.get_reservation(reservation_id)
        assert reservation is not None and posted.entry is not None  # it exists; a capture writes an entry
        return reservation, posted.entry

    async def post(self, op: ledger.EntryOp) -> Posted:
        posted = await self._store.post(op)
        if posted.outcome == Outcome.APPLIED:
            self._moved.count(op.kind, op.amount_cents)
        return posted

    async def _once(self, method: str, request: pb.TopUpRequest | pb.ChargeRequest | pb.RefundRequest,
                    op_for: Callable[[bytes], Awaitable[ledger.EntryOp]], response: type[M], retry: bool) -> M:
        """Runs a keyed money movement once, by storage's unique key (a retry asks Redis first). The answer is
        `response` holding the entry (the same bytes on a replay from Redis)."""
        fp = fingerprint(method, request)

        async def work() -> bytes:
            op = await op_for(fp)
            posted = await self.post(op)
            if not posted.done:
                raise ledger.refusal(posted.outcome, op, posted.detail_cents, posted.entry_id)
            assert posted.entry is not None  # a movement applied or replayed has its entry
            return response(entry=mappers.entry(posted.entry)).SerializeToString()

        return response.FromString(await self._idempotency.run(request.idempotency_key, fp, work, retry=retry))
