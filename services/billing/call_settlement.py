"""Settling stored call decisions: one SettleCalls to the wallet, then one transaction here.

Every wallet movement is keyed by a natural id (the payer's hold on the call is captured once, else `call:<id>`
is charged), and the decision was stored in state 'settling' before the wallet is called. So a crash anywhere
leaves a settling row that a re-send or the sweeper re-drives with the same keys: money moves at most once,
and eventually exactly once."""

from __future__ import annotations

from callersync.billing.v1 import billing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.billing.charge_ids import charge_id
from services.billing.clients import WalletClient, no_wallet
from services.billing.records import RatedCall
from services.billing.storage import BillingStore
from services.runtime.errors import DomainError, FailedPrecondition
from services.runtime.fault import FaultHook


def settlement_item(row: RatedCall) -> wpb.CallSettlement:
    """The same key, reference and description as the single Capture/Charge RPCs, so the wallet replays
    whatever an earlier attempt (of either kind) moved."""
    if not row.billable:
        return wpb.CallSettlement(call_id=row.call_id)
    return wpb.CallSettlement(
        call_id=row.call_id, payer_contractor_id=row.payer_contractor_id, amount_cents=row.price_cents,
        idempotency_key=f"call:{row.call_id}", reference=row.call_id,
        description=f"call {row.call_id} to ZIP {row.zip}: connected 30 s or more",
    )


def settlement_refused(row: RatedCall, result: wpb.CallSettlementResult) -> DomainError:
    """The wallet's refusal of one item as billing's answer for that call (the decision stays stored)."""
    if result.refusal == wpb.WALLET_REFUSAL_NO_WALLET:
        return no_wallet(row.payer_contractor_id)
    if result.refusal == wpb.WALLET_REFUSAL_RESERVATION_ALREADY_CAPTURED:
        return FailedPrecondition(
            f"the wallet refused to capture the payer's reservation for call {row.call_id}: {result.message}. "
            "The decision is stored; an operator must settle it.",
            reason="CAPTURE_REFUSED",
        )
    return FailedPrecondition(
        f"the wallet refused to settle call {row.call_id}: {result.message}. The decision is stored; an "
        "operator must settle it.",
        reason=result.reason or "SETTLEMENT_REFUSED",
    )


class CallSettler:
    def __init__(self, store: BillingStore, wallet: WalletClient, fault: FaultHook) -> None:
        self._store = store
        self._wallet = wallet
        self._fault = fault

    async def settle(self, rows: list[RatedCall]) -> tuple[dict[str, RatedCall], dict[str, DomainError]]:
        """Drives stored decisions to 'settled' with one SettleCalls (the wallet captures each payer's hold on
        the call, else charges it by `call:<id>`, and releases every other hold) and one transaction here.
        Returns the settled rows and the refusals, by call id; a refused call stays 'settling'."""
        if not rows:
            return {}, {}
        try:
            results = await self._wallet.settle_calls([settlement_item(r) for r in rows])
        except DomainError as err:
            await self._store.note_failures([(r.call_id, err.message) for r in rows])
            return {}, {r.call_id: err for r in rows}
        failed: dict[str, DomainError] = {}
        done: list[tuple[RatedCall, wpb.CallSettlementResult]] = []
        for row, result in zip(rows, results, strict=True):
            if result.code:
                failed[row.call_id] = settlement_refused(row, result)
            else:
                done.append((row, result))
        if failed:
            await self._store.note_failures([(k, e.message) for k, e in failed.items()])
        if not done:
            return {}, failed
        self._fault.crash_point()
        settled: list[tuple[RatedCall, str, int | None, str]] = []
        charges = []
        for row, result in done:
            entry = result.entry if result.HasField("entry") else None
            how = "none" if entry is None else ("capture" if entry.kind == wpb.ENTRY_KIND_CAPTURE else "charge")
            reservation_id = ""
            if how == "capture":
                assert entry is not None  # how is "none" without an entry
                reservation_id = entry.reservation_id
            settled.append((row, how, entry.entry_id if entry else None, reservation_id))
            if row.billable:
                # A billable call has a payer and a price (settlement_item), so the wallet posted a capture or a
                # charge for it: a refusal went to failed above.
                assert entry is not None
                call = pb.FinishedCall.FromString(row.facts)
                charges.append({
                    "charge_id": charge_id(f"call:{row.call_id}"), "contractor_id": row.payer_contractor_id,
                    "kind": "call", "call_id": row.call_id, "zip": row.zip, "amount_cents": row.price_cents,
                    "wallet_entry_id": entry.entry_id, "recording_uri": call.recording.uri,
                    "disclosure_played": call.recording.disclosure_played, "transcript_uri": call.transcript_uri,
                })
        return await self._store.finish_calls(settled, charges), failed
