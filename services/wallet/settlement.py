"""SettleCalls: a batch of finished calls settled in one statement, each call's result its own (the payer's hold
captured, else a charge by the call's key; a refusal refuses that call alone)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from callersync.wallet.v1 import wallet_pb2 as pb
from services.runtime.errors import DomainError
from services.runtime.idempotency import fingerprint
from services.wallet import ledger
from services.wallet.postings import MovedMoney, capture_hash
from services.wallet.records import Entry, Outcome
from services.wallet.storage import WalletStore


@dataclasses.dataclass(frozen=True)
class Settled:
    """One call's result: its entry (none for a free call), or why it was refused."""

    call_id: str
    entry: Entry | None
    refusal: DomainError | None


def settle_op(item: pb.CallSettlement, reservation_id: str | None) -> ledger.SettleOp:
    """The hashes Charge and Capture would store for the same movement, so either RPC replays the other's."""
    if not item.payer_contractor_id:
        return ledger.SettleOp(item.call_id, "", 0, "", None, item.reference, item.description, None, None)
    charge = pb.ChargeRequest(contractor_id=item.payer_contractor_id, amount_cents=item.amount_cents,
                              idempotency_key=item.idempotency_key, reference=item.reference,
                              description=item.description)
    capture = capture_hash(reservation_id, item.amount_cents) if reservation_id else None
    return ledger.SettleOp(item.call_id, item.payer_contractor_id, item.amount_cents, item.idempotency_key,
                           fingerprint("Charge", charge), item.reference, item.description, reservation_id, capture)


class CallSettlement:
    def __init__(self, store: WalletStore) -> None:
        self._store = store
        self._moved = MovedMoney()

    async def settle(self, items: Sequence[pb.CallSettlement]) -> list[Settled]:
        """Items already validated (ledger.validate_settlement); one result per item, in order."""
        held = await self._store.payer_reservations(
            [(it.payer_contractor_id, it.call_id) for it in items if it.payer_contractor_id]
        )
        ops = [settle_op(it, held.get((it.payer_contractor_id, it.call_id))) for it in items]
        results = []
        for op, posted in zip(ops, await self._store.settle_calls(ops), strict=True):
            if not posted.done:
                kind = "capture" if posted.outcome == Outcome.RESERVATION_CAPTURED else "charge"
                refused = ledger.EntryOp(kind, op.payer_contractor_id, op.amount_cents, op.idempotency_key, b"",
                                         reservation_id=op.reservation_id)
                results.append(Settled(op.call_id, None, ledger.refusal(posted.outcome, refused, posted.detail_cents,
                                                                        posted.entry_id)))
                continue
            if posted.entry is not None and posted.outcome == Outcome.APPLIED:
                self._moved.count(posted.entry.kind, op.amount_cents)
            results.append(Settled(op.call_id, posted.entry, None))
        return results
