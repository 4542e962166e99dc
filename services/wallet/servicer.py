"""WalletService's gRPC layer: proto in, rules and storage, proto out."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TypeVar

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime import paging, telemetry
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.runtime.idempotency import IdempotencyCache, fingerprint, is_retry
from services.runtime.validation import require_text
from services.wallet import forecast, ledger, mappers, top_ups
from services.wallet.config import WalletConfig
from services.wallet.payments import PaymentDesk
from services.wallet.provider import ProviderError
from services.wallet.records import APPLIED, Posted
from services.wallet.storage import WalletStore

M = TypeVar("M", pb.TopUpResponse, pb.ChargeResponse, pb.RefundResponse)


def _uuid(name: str, value: str) -> str:
    ledger.require_id(name, value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{name} {value!r} is not a reservation id issued by Reserve", field=name) from None


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
    def __init__(self, store: WalletStore, idempotency: IdempotencyCache, config: WalletConfig,
                 payments: PaymentDesk) -> None:
        self._store = store
        self._payments = payments
        self._idempotency = idempotency
        self._config = config
        self._moved_cents = telemetry.hot_counter(
            "wallet", "wallet.money_moved", unit="cents", description="cents moved by applied entries, by kind"
        )
        self._entries = telemetry.hot_counter("wallet", "wallet.entries", description="applied ledger entries, by kind")

    async def _post(self, op: ledger.EntryOp) -> Posted:
        posted = await self._store.post(op)
        if posted.outcome == "applied":
            self._moved_cents.add(op.amount_cents, {"kind": op.kind})
            self._entries.add(1, {"kind": op.kind})
        return posted

    async def _post_once(self, method: str, request, op_for, response: type[M],
                         context: grpc.aio.ServicerContext) -> M:
        """Runs a keyed money movement once, by storage's unique key (a retry asks Redis first). The answer is
        `response` holding the entry (the same bytes on a replay from Redis)."""
        fp = fingerprint(method, request)

        async def work() -> bytes:
            op = await op_for(fp)
            posted = await self._post(op)
            if not posted.done:
                raise ledger.refusal(posted.outcome, op, posted.detail_cents, posted.entry_id)
            assert posted.entry is not None  # a movement applied or replayed has its entry
            return response(entry=mappers.entry(posted.entry)).SerializeToString()

        return response.FromString(await self._idempotency.run(
            request.idempotency_key, fp, work, retry=is_retry(context.invocation_metadata())))

    async def TopUp(self, request: pb.TopUpRequest, context: grpc.aio.ServicerContext) -> pb.TopUpResponse:
        """An operator's manual credit: the reason is the entry's description."""
        top_ups.validate_manual_credit(
            request.contractor_id,
            request.amount_cents,
            request.payment_reference,
            request.idempotency_key,
            request.reason,
            self._config.top_up_max_cents,
        )

        async def op_for(fp: bytes) -> ledger.EntryOp:
            return ledger.EntryOp(
                "top_up", request.contractor_id, request.amount_cents, request.idempotency_key, fp,
                reference=request.payment_reference, description=request.reason.strip(),
            )

        return await self._post_once("TopUp", request, op_for, pb.TopUpResponse, context)

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

        return await self._post_once("Charge", request, op_for, pb.ChargeResponse, context)

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

        return await self._post_once("Refund", request, op_for, pb.RefundResponse, context)

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
            raise ledger.refusal("reservation_captured", op, held.captured_cents, held.capture_entry_id)
        if not posted.done:
            raise ledger.refusal(posted.outcome, op, posted.detail_cents, posted.entry_id)
        reservation = await self._store.get_reservation(reservation_id)
        assert reservation is not None and posted.entry is not None  # it exists; a capture writes an entry
        return pb.CaptureResponse(reservation=mappers.reservation(reservation), entry=mappers.entry(posted.entry))

    async def Reserve(self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext) -> pb.ReserveResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_id("call_id", request.call_id)
        ledger.require_amount("amount_cents", request.amount_cents)
        ttl_s = ledger.reservation_ttl_s(request.expires_in_s, self._config.reservation_default_ttl_s)
        reserved = await self._store.reserve(request.contractor_id, request.call_id, request.amount_cents, ttl_s)
        if reserved.reservation is None:
            raise ledger.reserve_refusal(
                reserved.outcome, request.contractor_id, request.call_id, reserved.available_cents,
                reserved.balance_cents, reserved.pause_threshold_cents, request.amount_cents,
            )
        return pb.ReserveResponse(reservation=mappers.reservation(reserved.reservation))

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        reservation_id = _uuid("reservation_id", request.reservation_id)
        held = await self._store.release(reservation_id)
        if held is None:
            raise NotFound(f"no reservation {reservation_id}", reason="NO_RESERVATION")
        if held.state == "captured":
            raise FailedPrecondition(
                f"reservation {reservation_id} was captured at {held.captured_cents} cents and cannot be "
                "released; refund the capture if it was wrong",
                reason="RESERVATION_ALREADY_CAPTURED",
            )
        return pb.ReleaseResponse(reservation=mappers.reservation(held))

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
        settled = await self._store.settle_calls(ops)
        results = []
        for op, posted in zip(ops, settled, strict=True):
            if not posted.done:
                kind = "capture" if posted.outcome == "reservation_captured" else "charge"
                err = ledger.refusal(posted.outcome, ledger.EntryOp(
                    kind, op.payer_contractor_id, op.amount_cents, op.idempotency_key, b"",
                    reservation_id=op.reservation_id,
                ), posted.detail_cents, posted.entry_id)
                results.append(pb.CallSettlementResult(call_id=op.call_id, code=err.code.value[0],
                                                       message=err.message, reason=err.reason,
                                                       refusal=mappers.refusal(err.reason)))
                continue
            result = pb.CallSettlementResult(call_id=op.call_id)
            if posted.entry is not None:  # none for a free call
                result.entry.CopyFrom(mappers.entry(posted.entry))
                if posted.outcome == APPLIED:
                    self._moved_cents.add(op.amount_cents, {"kind": posted.entry.kind})
                    self._entries.add(1, {"kind": posted.entry.kind})
            results.append(result)
        return pb.SettleCallsResponse(results=results)

    async def ListCallReservations(
        self, request: pb.ListCallReservationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCallReservationsResponse:
        ledger.require_id("call_id", request.call_id)
        held = await self._store.call_reservations(request.call_id)
        return pb.ListCallReservationsResponse(reservations=[mappers.reservation(r) for r in held])

    async def GetWallet(self, request: pb.GetWalletRequest, context: grpc.aio.ServicerContext) -> pb.GetWalletResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        wallet = await self._store.get_wallet(request.contractor_id)
        if wallet is None:
            raise NotFound(f"contractor {request.contractor_id!r} has no wallet; the first top-up creates it",
                           reason="NO_WALLET")
        return pb.GetWalletResponse(wallet=mappers.wallet(wallet))

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEntriesResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        size = paging.page_size(request.page_size, ledger.DEFAULT_PAGE_SIZE, ledger.MAX_PAGE_SIZE)
        before = paging.decode_id(request.page_token)
        if before is None and await self._store.get_wallet(request.contractor_id) is None:
            raise NotFound(f"contractor {request.contractor_id!r} has no wallet", reason="NO_WALLET")
        entries = await self._store.list_entries(request.contractor_id, before, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        return pb.ListEntriesResponse(
            entries=[mappers.entry(e) for e in entries],
            next_page_token=paging.encode_id(entries[-1].entry_id) if more else "",
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
        answers = await self._store.routability(request.contractor_ids)
        return pb.GetRoutabilityResponse(routabilities=[mappers.routability(a, request.amount_cents) for a in answers])

    async def SetPauseThreshold(
        self, request: pb.SetPauseThresholdRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPauseThresholdResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_amount("threshold_cents", request.threshold_cents, minimum=0)
        wallet = await self._store.set_pause_threshold(request.contractor_id, request.threshold_cents)
        return pb.SetPauseThresholdResponse(wallet=mappers.wallet(wallet))

    async def SetLowBalanceAlert(
        self, request: pb.SetLowBalanceAlertRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLowBalanceAlertResponse:
        ledger.validate_alert(request.contractor_id, request.threshold_cents, request.email)
        email = request.email if request.threshold_cents else ""
        wallet = await self._store.set_low_balance_alert(request.contractor_id, request.threshold_cents, email)
        if wallet is None:
            raise ledger.no_wallet(request.contractor_id)
        return pb.SetLowBalanceAlertResponse(wallet=mappers.wallet(wallet))

    async def SetContactEmail(
        self, request: pb.SetContactEmailRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetContactEmailResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        if request.email:
            ledger.validate_email(request.email)
        wallet = await self._store.set_contact_email(request.contractor_id, request.email)
        if wallet is None:
            raise ledger.no_wallet(request.contractor_id)
        return pb.SetContactEmailResponse(wallet=mappers.wallet(wallet))

    async def FindContractorsByEmail(
        self, request: pb.FindContractorsByEmailRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindContractorsByEmailResponse:
        ledger.validate_email(request.email)
        return pb.FindContractorsByEmailResponse(contractor_ids=await self._store.contractors_by_email(request.email))

    async def GetSpendForecast(
        self, request: pb.GetSpendForecastRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSpendForecastResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        lookback = forecast.days_asked("lookback_days", request.lookback_days, forecast.DEFAULT_LOOKBACK_DAYS)
        history = forecast.days_asked("history_days", request.history_days, forecast.DEFAULT_HISTORY_DAYS)
        wallet = await self._store.get_wallet(request.contractor_id)
        if wallet is None:
            raise NotFound(f"contractor {request.contractor_id!r} has no wallet; the first top-up creates it",
                           reason="NO_WALLET")
        today = (await self._store.now()).astimezone(dt.UTC).date()
        since = dt.datetime.combine(forecast.first_day(today, lookback, history), dt.time(), dt.UTC)
        activity = {d.date: d for d in await self._store.daily_activity(request.contractor_id, since)}
        found = forecast.forecast(wallet.balance_cents, wallet.pause_threshold_cents, wallet.paused, activity, today,
                                  lookback, history)
        return pb.GetSpendForecastResponse(forecast=mappers.spend_forecast(wallet, found))

    async def StartTopUp(
        self, request: pb.StartTopUpRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartTopUpResponse:
        top_ups.validate_start(request.contractor_id, request.amount_cents, request.idempotency_key, request.email,
                               self._config.top_up_max_cents)
        top_up, secret = await self._payments.start_top_up(
            request.contractor_id, request.amount_cents, request.email, request.idempotency_key,
            fingerprint("StartTopUp", request))
        return pb.StartTopUpResponse(top_up=mappers.top_up(top_up), client_secret=secret,
                                     publishable_key=self._payments.provider.publishable_key)

    async def GetTopUp(self, request: pb.GetTopUpRequest, context: grpc.aio.ServicerContext) -> pb.GetTopUpResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_id("top_up_id", request.top_up_id)
        top_up = await self._payments.top_up(request.top_up_id)
        # Another contractor's top-up reads as missing: its id says nothing about whether it exists.
        if top_up is None or top_up.contractor_id != request.contractor_id:
            raise NotFound(f"contractor {request.contractor_id!r} has no top-up {request.top_up_id!r}",
                           reason="NO_TOP_UP")
        reply = pb.GetTopUpResponse(top_up=mappers.top_up(top_up))
        # The means to pay goes to the contractor alone (the gateway says whom it calls for), never to an operator.
        if ("x-callersync-role", "contractor") in tuple(context.invocation_metadata() or ()):
            reply.client_secret, reply.payment_method_id = await self._payments.to_finish(top_up)
            if reply.client_secret:
                reply.publishable_key = self._payments.provider.publishable_key
        return reply

    async def StartCardSetup(
        self, request: pb.StartCardSetupRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartCardSetupResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        if request.email:
            ledger.validate_email(request.email)
        setup_id, secret = await self._payments.start_card_setup(request.contractor_id, request.email)
        return pb.StartCardSetupResponse(setup_intent_id=setup_id, client_secret=secret,
                                         publishable_key=self._payments.provider.publishable_key)

    async def SetAutoTopUp(
        self, request: pb.SetAutoTopUpRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetAutoTopUpResponse:
        wanted = top_ups.AutoTopUpSettings(request.enabled, request.threshold_cents, request.amount_cents,
                                           request.max_per_day_cents, request.email)
        top_ups.validate_auto_top_up(request.contractor_id, wanted, self._config.top_up_max_cents)
        if request.enabled:
            await self._payments.settle_card_setups(request.contractor_id)
        outcome = await self._payments.set_auto_top_up(request.contractor_id, wanted,
                                                       self._config.auto_top_up_max_per_hour)
        if outcome == "no_wallet":
            raise ledger.no_wallet(request.contractor_id)
        if outcome == "no_card":
            raise FailedPrecondition(
                "no saved card: save one first (StartCardSetup, then confirm it in the browser)", reason="NO_CARD")
        wallet = await self._store.get_wallet(request.contractor_id)
        if outcome == "below_pause_line":
            raise FailedPrecondition(
                f"threshold_cents {request.threshold_cents} is below the pause line "
                f"({wallet.pause_threshold_cents if wallet else 0} cents): a top-up that starts after calls pause "
                "is too late; choose at least the pause line", reason="THRESHOLD_BELOW_PAUSE_LINE")
        assert wallet is not None  # set_auto_top_up found it (else no_wallet above), and wallets are never deleted
        return pb.SetAutoTopUpResponse(wallet=mappers.wallet(wallet))

    async def ApplyPaymentEvent(
        self, request: pb.ApplyPaymentEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApplyPaymentEventResponse:
        ledger.require_id("object_id", request.object_id)
        source = f"webhook {request.event_type or '?'} {request.event_id or '?'}"[:200]
        if not request.object_id.startswith(("pi_", "seti_")):
            raise InvalidArgument("object_id must name a PaymentIntent (pi_...) or a SetupIntent (seti_...)",
                                  field="object_id")
        try:
            if request.object_id.startswith("seti_"):
                outcome, top_up_id = await self._payments.apply_card_setup(request.object_id, source), ""
            else:
                outcome, top_up_id = await self._payments.apply_payment(request.object_id, source)
        except ProviderError as err:
            raise Unavailable(f"the payment provider could not be asked ({err.code}); retry shortly") from err
        return pb.ApplyPaymentEventResponse(outcome=mappers.EVENT_OUTCOMES[outcome], top_up_id=top_up_id)
