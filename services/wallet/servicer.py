"""WalletService's gRPC layer: proto in, rules and storage, proto out."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime import paging, telemetry
from services.runtime.config import Settings
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from services.runtime.idempotency import IdempotencyCache, fingerprint
from services.runtime.timestamps import stamp
from services.runtime.validation import require_text
from services.wallet import ledger, mappers
from services.wallet.storage import WalletStore

_KINDS = {
    "top_up": pb.ENTRY_KIND_TOP_UP,
    "capture": pb.ENTRY_KIND_CAPTURE,
    "charge": pb.ENTRY_KIND_CHARGE,
    "refund": pb.ENTRY_KIND_REFUND,
}
_RESERVATION_STATES = {
    "open": pb.RESERVATION_STATE_OPEN,
    "captured": pb.RESERVATION_STATE_CAPTURED,
    "released": pb.RESERVATION_STATE_RELEASED,
    "expired": pb.RESERVATION_STATE_EXPIRED,
}
_ROUTABILITY = {
    "routable": pb.ROUTABILITY_REASON_ROUTABLE,
    "no_wallet": pb.ROUTABILITY_REASON_NO_WALLET,
    "paused": pb.ROUTABILITY_REASON_PAUSED,
    "insufficient_available": pb.ROUTABILITY_REASON_INSUFFICIENT_AVAILABLE,
}



def _uuid(name: str, value: str) -> str:
    ledger.require_id(name, value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{name} {value!r} is not a reservation id issued by Reserve", field=name) from None


def entry_message(row: asyncpg.Record) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=row["entry_id"],
        contractor_id=row["contractor_id"],
        kind=_KINDS[row["kind"]],
        amount_cents=row["amount_cents"],
        balance_after_cents=row["balance_after_cents"],
        idempotency_key=row["idempotency_key"],
        reference=row["reference"],
        description=row["description"],
        refund_of_entry_id=row["refund_of_entry_id"] or 0,
        reservation_id=str(row["reservation_id"]) if row["reservation_id"] else "",
        created_at=stamp(row["created_at"]),
    )


def wallet_message(row: asyncpg.Record) -> pb.Wallet:
    return pb.Wallet(
        contractor_id=row["contractor_id"],
        balance_cents=row["balance_cents"],
        reserved_cents=row["reserved_cents"],
        available_cents=row["balance_cents"] - row["reserved_cents"],
        paused=row["paused"],
        pause_threshold_cents=row["pause_threshold_cents"],
        low_balance_alert=pb.LowBalanceAlert(
            threshold_cents=row["alert_threshold_cents"], email=row["alert_email"], armed=row["alert_armed"]
        ),
        created_at=stamp(row["created_at"]),
        updated_at=stamp(row["updated_at"]),
    )


def reservation_message(row: Mapping[str, Any], now: dt.datetime) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=str(row["reservation_id"]),
        contractor_id=row["contractor_id"],
        call_id=row["call_id"],
        amount_cents=row["amount_cents"],
        state=_RESERVATION_STATES[ledger.reservation_state(row["state"], row["expires_at"], now)],
        expires_at=stamp(row["expires_at"]),
        captured_cents=row["captured_cents"] or 0,
        capture_entry_id=row["capture_entry_id"] or 0,
    )


def _settle_op(item: pb.CallSettlement, reservation_id: str | None) -> ledger.SettleOp:
    """The hashes Charge and Capture would store for the same movement, so either RPC replays the other's."""
    if not item.payer_contractor_id:
        return ledger.SettleOp(item.call_id, "", 0, "", None, item.reference, item.description, None, None)
    charge = pb.ChargeRequest(contractor_id=item.payer_contractor_id, amount_cents=item.amount_cents,
                              idempotency_key=item.idempotency_key, reference=item.reference,
                              description=item.description)
    capture = (fingerprint("Capture", pb.CaptureRequest(reservation_id=reservation_id, amount_cents=item.amount_cents))
               if reservation_id else None)
    return ledger.SettleOp(item.call_id, item.payer_contractor_id, item.amount_cents, item.idempotency_key,
                           fingerprint("Charge", charge), item.reference, item.description, reservation_id, capture)


class WalletServicer(wallet_pb2_grpc.WalletServiceServicer):
    def __init__(self, store: WalletStore, idempotency: IdempotencyCache, settings: Settings) -> None:
        self._store = store
        self._idempotency = idempotency
        self._settings = settings
        meter = telemetry.meter("wallet")
        self._moved_cents = meter.create_counter(
            "wallet.money_moved", unit="cents", description="cents moved by applied entries, by kind"
        )
        self._entries = meter.create_counter("wallet.entries", description="applied ledger entries, by kind")

    async def _post(self, op: ledger.EntryOp):
        posted = await self._store.post(op)
        if posted.outcome == "applied":
            self._moved_cents.add(op.amount_cents, {"kind": op.kind})
            self._entries.add(1, {"kind": op.kind})
        return posted

    async def _post_once(self, method: str, request, op_for, respond) -> bytes:
        """Runs a keyed money movement once: the Redis fast path first, then storage's unique key."""
        fp = fingerprint(method, request)

        async def work() -> bytes:
            op = await op_for(fp)
            posted = await self._post(op)
            if posted.outcome not in ("applied", "replayed"):
                raise ledger.refusal(posted.outcome, op, posted.row["detail_cents"], posted.row["entry_id"])
            return respond(posted).SerializeToString()

        return await self._idempotency.run(request.idempotency_key, fp, work)

    async def TopUp(self, request: pb.TopUpRequest, context: grpc.aio.ServicerContext) -> pb.TopUpResponse:
        ledger.validate_top_up(
            request.contractor_id,
            request.amount_cents,
            request.payment_reference,
            request.idempotency_key,
            self._settings.top_up_max_cents,
        )

        async def op_for(fp: bytes) -> ledger.EntryOp:
            return ledger.EntryOp(
                "top_up", request.contractor_id, request.amount_cents, request.idempotency_key, fp,
                reference=request.payment_reference,
            )

        raw = await self._post_once("TopUp", request, op_for, lambda p: pb.TopUpResponse(entry=entry_message(p.row)))
        return pb.TopUpResponse.FromString(raw)

    async def Charge(self, request: pb.ChargeRequest, context: grpc.aio.ServicerContext) -> pb.ChargeResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_amount("amount_cents", request.amount_cents)
        ledger.require_id("idempotency_key", request.idempotency_key, ledger.MAX_KEY_LEN)
        require_text("reference", request.reference, ledger.MAX_TEXT_LEN)
        require_text("description", request.description, ledger.MAX_TEXT_LEN)

        async def op_for(fp: bytes) -> ledger.EntryOp:
            return ledger.EntryOp(
                "charge", request.contractor_id, request.amount_cents, request.idempotency_key, fp,
                reference=request.reference, description=request.description,
            )

        raw = await self._post_once("Charge", request, op_for, lambda p: pb.ChargeResponse(entry=entry_message(p.row)))
        return pb.ChargeResponse.FromString(raw)

    async def Refund(self, request: pb.RefundRequest, context: grpc.aio.ServicerContext) -> pb.RefundResponse:
        if request.charge_entry_id <= 0:
            raise InvalidArgument("charge_entry_id must name a charge or capture entry", field="charge_entry_id")
        ledger.require_amount("amount_cents", request.amount_cents)
        ledger.require_id("idempotency_key", request.idempotency_key, ledger.MAX_KEY_LEN)
        require_text("description", request.description, ledger.MAX_TEXT_LEN)

        async def op_for(fp: bytes) -> ledger.EntryOp:
            owner = await self._store.entry_owner(request.charge_entry_id)
            if owner is None:
                raise NotFound(f"no ledger entry {request.charge_entry_id}", reason="NO_CHARGE")
            return ledger.EntryOp(
                "refund", owner, request.amount_cents, request.idempotency_key, fp,
                description=request.description, refund_of_entry_id=request.charge_entry_id,
            )

        raw = await self._post_once("Refund", request, op_for, lambda p: pb.RefundResponse(entry=entry_message(p.row)))
        return pb.RefundResponse.FromString(raw)

    async def Capture(self, request: pb.CaptureRequest, context: grpc.aio.ServicerContext) -> pb.CaptureResponse:
        reservation_id = _uuid("reservation_id", request.reservation_id)
        ledger.require_amount("amount_cents", request.amount_cents, minimum=0)
        require_text("description", request.description, ledger.MAX_TEXT_LEN)
        owner = await self._store.reservation_owner(reservation_id)
        if owner is None:
            raise NotFound(f"no reservation {reservation_id}", reason="NO_RESERVATION")
        # The reservation is the natural key: it settles once, and a retry at the same amount replays.
        capture = pb.CaptureRequest(reservation_id=reservation_id, amount_cents=request.amount_cents)
        op = ledger.EntryOp(
            "capture", owner, request.amount_cents, f"capture:{reservation_id}", fingerprint("Capture", capture),
            reference=reservation_id, description=request.description, reservation_id=reservation_id,
        )
        posted = await self._post(op)
        if posted.outcome == "key_reused":  # captured before, at another amount
            held = await self._store.get_reservation(reservation_id)
            assert held is not None  # reservation_owner found it above, and reservations are never deleted
            raise ledger.refusal("reservation_captured", op, held["captured_cents"], held["capture_entry_id"])
        if posted.outcome not in ("applied", "replayed"):
            raise ledger.refusal(posted.outcome, op, posted.row["detail_cents"], posted.row["entry_id"])
        reservation = await self._store.get_reservation(reservation_id)
        assert reservation is not None  # as above: it exists, and reservations are never deleted
        return pb.CaptureResponse(
            reservation=reservation_message(reservation, reservation["now"]), entry=entry_message(posted.row)
        )

    async def Reserve(self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext) -> pb.ReserveResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_id("call_id", request.call_id)
        ledger.require_amount("amount_cents", request.amount_cents)
        ttl_s = ledger.reservation_ttl_s(request.expires_in_s, self._settings.reservation_default_ttl_s)
        row = await self._store.reserve(request.contractor_id, request.call_id, request.amount_cents, ttl_s)
        if row["outcome"] not in ("applied", "replayed"):
            raise ledger.reserve_refusal(
                row["outcome"], request.contractor_id, request.call_id, row["available_cents"],
                row["balance_cents"], row["pause_threshold_cents"], request.amount_cents,
            )
        reservation = dict(row, contractor_id=request.contractor_id, call_id=request.call_id)
        return pb.ReserveResponse(reservation=reservation_message(reservation, row["now"]))

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        reservation_id = _uuid("reservation_id", request.reservation_id)
        row = await self._store.release(reservation_id)
        if row is None:
            raise NotFound(f"no reservation {reservation_id}", reason="NO_RESERVATION")
        if row["state"] == "captured":
            raise FailedPrecondition(
                f"reservation {reservation_id} was captured at {row['captured_cents']} cents and cannot be "
                "released; refund the capture if it was wrong",
                reason="RESERVATION_ALREADY_CAPTURED",
            )
        return pb.ReleaseResponse(reservation=reservation_message(row, row["now"]))

    async def SettleCalls(
        self, request: pb.SettleCallsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SettleCallsResponse:
        if not request.items or len(request.items) > ledger.MAX_SETTLE_BATCH:
            raise InvalidArgument(
                f"items must hold 1 to {ledger.MAX_SETTLE_BATCH} calls; got {len(request.items)}", field="items"
            )
        for i, it in enumerate(request.items):
            ledger.validate_settlement(i, it.call_id, it.payer_contractor_id, it.amount_cents, it.idempotency_key,
                                       it.reference, it.description)
        held = await self._store.payer_reservations(
            [(it.payer_contractor_id, it.call_id) for it in request.items if it.payer_contractor_id]
        )
        ops = [_settle_op(it, held.get((it.payer_contractor_id, it.call_id))) for it in request.items]
        rows = await self._store.settle_calls(ops)
        results = []
        for op, row in zip(ops, rows, strict=True):
            if row["outcome"] not in ("applied", "replayed"):
                kind = "capture" if row["outcome"] == "reservation_captured" else "charge"
                err = ledger.refusal(row["outcome"], ledger.EntryOp(
                    kind, op.payer_contractor_id, op.amount_cents, op.idempotency_key, b"",
                    reservation_id=op.reservation_id,
                ), row["detail_cents"], row["entry_id"])
                results.append(pb.CallSettlementResult(call_id=op.call_id, code=err.code.value[0],
                                                       message=err.message, reason=err.reason,
                                                       refusal=mappers.refusal(err.reason)))
                continue
            result = pb.CallSettlementResult(call_id=op.call_id)
            if row["entry_id"] is not None:
                result.entry.CopyFrom(entry_message(row))
                if row["outcome"] == "applied":
                    self._moved_cents.add(op.amount_cents, {"kind": row["kind"]})
                    self._entries.add(1, {"kind": row["kind"]})
            results.append(result)
        return pb.SettleCallsResponse(results=results)

    async def ListCallReservations(
        self, request: pb.ListCallReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCallReservationsResponse:
        ledger.require_id("call_id", request.call_id)
        rows = await self._store.call_reservations(request.call_id)
        now = await self._store.now()
        return pb.ListCallReservationsResponse(reservations=[reservation_message(r, now) for r in rows])

    async def GetWallet(self, request: pb.GetWalletRequest, context: grpc.aio.ServicerContext) -> pb.GetWalletResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        row = await self._store.get_wallet(request.contractor_id)
        if row is None:
            raise NotFound(f"contractor {request.contractor_id!r} has no wallet; the first top-up creates it",
                           reason="NO_WALLET")
        return pb.GetWalletResponse(wallet=wallet_message(row))

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEntriesResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        size = paging.page_size(request.page_size, ledger.DEFAULT_PAGE_SIZE, ledger.MAX_PAGE_SIZE)
        before = paging.decode_id(request.page_token)
        if before is None and await self._store.get_wallet(request.contractor_id) is None:
            raise NotFound(f"contractor {request.contractor_id!r} has no wallet", reason="NO_WALLET")
        rows = await self._store.list_entries(request.contractor_id, before, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListEntriesResponse(
            entries=[entry_message(r) for r in rows],
            next_page_token=paging.encode_id(rows[-1]["entry_id"]) if more else "",
        )

    async def GetRoutability(
        self, request: pb.GetRoutabilityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRoutabilityResponse:
        if not request.contractor_ids:
            raise InvalidArgument("contractor_ids must name at least one contractor", field="contractor_ids")
        if len(request.contractor_ids) > ledger.MAX_ROUTABILITY_BATCH:
            raise InvalidArgument(
                f"at most {ledger.MAX_ROUTABILITY_BATCH} contractors per call", field="contractor_ids"
            )
        for cid in request.contractor_ids:
            ledger.require_id("contractor_ids", cid)
        ledger.require_amount("amount_cents", request.amount_cents, minimum=0)
        answers = []
        for row in await self._store.routability(request.contractor_ids):
            found = row["contractor_id"] is not None
            reason = ledger.routability(found, bool(row["paused"]), row["available_cents"] or 0, request.amount_cents)
            answers.append(
                pb.Routability(
                    contractor_id=row["asked_id"],
                    routable=reason == "routable",
                    reason=_ROUTABILITY[reason],
                    available_cents=row["available_cents"] or 0,
                    balance_cents=row["balance_cents"] or 0,
                    pause_threshold_cents=row["pause_threshold_cents"] or 0,
                )
            )
        return pb.GetRoutabilityResponse(routabilities=answers)

    async def SetPauseThreshold(
        self, request: pb.SetPauseThresholdRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPauseThresholdResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_amount("threshold_cents", request.threshold_cents, minimum=0)
        row = await self._store.set_pause_threshold(request.contractor_id, request.threshold_cents)
        return pb.SetPauseThresholdResponse(wallet=wallet_message(row))

    async def SetLowBalanceAlert(
        self, request: pb.SetLowBalanceAlertRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLowBalanceAlertResponse:
        ledger.validate_alert(request.contractor_id, request.threshold_cents, request.email)
        email = request.email if request.threshold_cents else ""
        row = await self._store.set_low_balance_alert(request.contractor_id, request.threshold_cents, email)
        if row is None:
            raise NotFound(f"contractor {request.contractor_id!r} has no wallet; top up first", reason="NO_WALLET")
        return pb.SetLowBalanceAlertResponse(wallet=wallet_message(row))
