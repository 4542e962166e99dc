"""WalletService's gRPC layer: validate, call the use case (postings, settlement, the payment desk) or storage,
map to proto."""

from __future__ import annotations

import uuid

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime import authz, paging
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.runtime.idempotency import fingerprint, is_retry
from services.runtime.validation import require_text
from services.wallet import forecast, ledger, mappers, top_ups
from services.wallet.config import WalletConfig
from services.wallet.payments import PaymentDesk
from services.wallet.postings import Postings
from services.wallet.provider import ProviderError
from services.wallet.settlement import CallSettlement, Settled
from services.wallet.spend_forecast import spend_forecast
from services.wallet.storage import WalletStore


def _uuid(name: str, value: str) -> str:
    ledger.require_id(name, value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{name} {value!r} is not a reservation id issued by Reserve", field=name) from None


def _settlement_result(settled: Settled) -> pb.CallSettlementResult:
    if settled.refusal is not None:
        err = settled.refusal
        return pb.CallSettlementResult(call_id=settled.call_id, code=err.code.value[0], message=err.message,
                                       reason=err.reason, refusal=mappers.refusal(err.reason))
    result = pb.CallSettlementResult(call_id=settled.call_id)
    if settled.entry is not None:  # none for a free call
        result.entry.CopyFrom(mappers.entry(settled.entry))
    return result


class WalletServicer(wallet_pb2_grpc.WalletServiceServicer):
    def __init__(self, store: WalletStore, postings: Postings, settlement: CallSettlement, config: WalletConfig,
                 payments: PaymentDesk) -> None:
        self._store = store
        self._postings = postings
        self._settlement = settlement
        self._payments = payments
        self._config = config

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
        return await self._postings.top_up(request, retry=is_retry(context.invocation_metadata()))

    async def Charge(self, request: pb.ChargeRequest, context: grpc.aio.ServicerContext) -> pb.ChargeResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        ledger.require_amount("amount_cents", request.amount_cents)
        ledger.require_id("idempotency_key", request.idempotency_key, ledger.MAX_KEY_LEN)
        require_text("reference", request.reference, ledger.MAX_TEXT_LEN)
        require_text("description", request.description, ledger.MAX_TEXT_LEN)
        return await self._postings.charge(request, retry=is_retry(context.invocation_metadata()))

    async def Refund(self, request: pb.RefundRequest, context: grpc.aio.ServicerContext) -> pb.RefundResponse:
        if request.charge_entry_id <= 0:
            raise InvalidArgument("charge_entry_id must name a charge or capture entry", field="charge_entry_id")
        ledger.require_amount("amount_cents", request.amount_cents)
        ledger.require_id("idempotency_key", request.idempotency_key, ledger.MAX_KEY_LEN)
        require_text("description", request.description, ledger.MAX_TEXT_LEN)
        return await self._postings.refund(request, retry=is_retry(context.invocation_metadata()))

    async def Capture(self, request: pb.CaptureRequest, context: grpc.aio.ServicerContext) -> pb.CaptureResponse:
        reservation_id = _uuid("reservation_id", request.reservation_id)
        ledger.require_amount("amount_cents", request.amount_cents, minimum=0)
        require_text("description", request.description, ledger.MAX_TEXT_LEN)
        reservation, entry = await self._postings.capture(reservation_id, request.amount_cents, request.description)
        return pb.CaptureResponse(reservation=mappers.reservation(reservation), entry=mappers.entry(entry))

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
        settled = await self._settlement.settle(request.items)
        return pb.SettleCallsResponse(results=[_settlement_result(s) for s in settled])

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
            raise ledger.no_wallet(request.contractor_id)
        return pb.GetWalletResponse(wallet=mappers.wallet(wallet))

    async def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEntriesResponse:
        ledger.require_id("contractor_id", request.contractor_id)
        size = paging.page_size(request.page_size, ledger.DEFAULT_PAGE_SIZE, ledger.MAX_PAGE_SIZE)
        before = paging.decode_id(request.page_token)
        if before is None and await self._store.get_wallet(request.contractor_id) is None:
            raise ledger.no_wallet(request.contractor_id)
        entries, next_token = paging.page_of(await self._store.list_entries(request.contractor_id, before, size + 1),
                                             size, lambda e: paging.encode_id(e.entry_id))
        return pb.ListEntriesResponse(entries=[mappers.entry(e) for e in entries], next_page_token=next_token)

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
        wallet, found = await spend_forecast(self._store, request.contractor_id, lookback, history)
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
        if authz.forwarded_role(context) == "contractor":
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
