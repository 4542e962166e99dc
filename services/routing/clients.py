"""Routing's calls to other services. The wallet: who can pay, hold the rate, let a hold go (the hot path), and
each contractor's pause threshold. Billing: its rate card and a replay of its events (when routing may have
missed them).

The wallet's refusals arrive typed (GetRoutability's RoutabilityReason, Reserve's ErrorInfo reason) and leave
here as a cascade.WalletRefusal, so the router switches on a value, never on words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import grpc

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.billing.v1 import billing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.routing.cascade import WalletRefusal
from services.runtime.errors import FailedPrecondition, Unavailable, typed_reason
from services.runtime.interceptors import error_reason
from services.runtime.timestamps import set_stamp

log = logging.getLogger("callersync.routing.rate_card")

ROUTABILITY_REFUSALS = {
    wpb.ROUTABILITY_REASON_PAUSED: WalletRefusal.PAUSED,
    wpb.ROUTABILITY_REASON_NO_WALLET: WalletRefusal.NO_WALLET,
    wpb.ROUTABILITY_REASON_INSUFFICIENT_AVAILABLE: WalletRefusal.INSUFFICIENT_AVAILABLE,
}
# Reserve's refusals that make a skip; any other error is the wallet failing, not refusing.
RESERVE_REFUSALS = {
    wpb.WALLET_REFUSAL_PAUSED: WalletRefusal.PAUSED,
    wpb.WALLET_REFUSAL_NO_WALLET: WalletRefusal.NO_WALLET,
    wpb.WALLET_REFUSAL_INSUFFICIENT_AVAILABLE: WalletRefusal.INSUFFICIENT_AVAILABLE,
}


@dataclasses.dataclass(frozen=True)
class Refused:
    """Reserve refused: routable a moment ago, not any more (a concurrent call took the money)."""

    refusal: WalletRefusal
    message: str


def wallet_refusal(err: grpc.aio.AioRpcError) -> int:
    """The wallet's refusal, typed (WALLET_REFUSAL_UNSPECIFIED when the error is no refusal the contract lists)."""
    return typed_reason(wpb.WalletRefusal, "WALLET_REFUSAL_", error_reason(err))


def refusal_of(answer: wpb.Routability) -> WalletRefusal | None:
    """None when the contractor can pay; an unknown reason counts as not enough money."""
    if answer.routable:
        return None
    return ROUTABILITY_REFUSALS.get(answer.reason, WalletRefusal.INSUFFICIENT_AVAILABLE)


class WalletClient:
    def __init__(self, stub: wallet_pb2_grpc.WalletServiceStub, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s

    async def routability(self, contractor_ids: list[str], rate_cents: int) -> dict[str, wpb.Routability]:
        try:
            reply = await self._stub.GetRoutability(
                wpb.GetRoutabilityRequest(contractor_ids=contractor_ids, amount_cents=rate_cents),
                timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            raise Unavailable(f"the wallet could not say who can pay ({err.code().name}: {err.details()}); "
                              "nobody was offered the call; retry", reason="WALLET_UNAVAILABLE") from err
        return {r.contractor_id: r for r in reply.routabilities}

    async def reserve(self, contractor_id: str, call_id: str, amount_cents: int,
                      ttl_s: int) -> wpb.Reservation | Refused | None:
        """The open hold; Refused; or None when this call already held (and gave up) one on them."""
        try:
            reply = await self._stub.Reserve(
                wpb.ReserveRequest(contractor_id=contractor_id, call_id=call_id, amount_cents=amount_cents,
                                   expires_in_s=ttl_s),
                timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            refusal = RESERVE_REFUSALS.get(wallet_refusal(err))
            if refusal is None:
                raise Unavailable(f"the wallet could not reserve ({err.code().name}: {err.details()}); retry",
                                  reason="WALLET_UNAVAILABLE") from err
            return Refused(refusal, err.details() or "")
        if reply.reservation.state != wpb.RESERVATION_STATE_OPEN:
            return None
        return reply.reservation

    async def release(self, reservation_id: str) -> None:
        if not reservation_id:
            return
        try:
            await self._stub.Release(wpb.ReleaseRequest(reservation_id=reservation_id), timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return
            if wallet_refusal(err) == wpb.WALLET_REFUSAL_RESERVATION_ALREADY_CAPTURED:
                raise FailedPrecondition(
                    f"reservation {reservation_id} was already captured: the call was connected and rated",
                    reason="CALL_ALREADY_RATED") from err
            raise Unavailable(f"the wallet could not release reservation {reservation_id} "
                              f"({err.code().name}: {err.details()}); retry", reason="WALLET_UNAVAILABLE") from err

    async def set_pause_threshold(self, contractor_id: str, threshold_cents: int) -> None:
        await self._stub.SetPauseThreshold(
            wpb.SetPauseThresholdRequest(contractor_id=contractor_id, threshold_cents=threshold_cents),
            timeout=self._timeout_s)


class BillingClient:
    """Off the hot path: a failed call raises grpc's error for the caller's retry loop (services.runtime.background
    UntilDone), except where routing serves a request (rate_card_of)."""

    def __init__(self, stub: billing_pb2_grpc.BillingServiceStub, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s

    async def rate_card_of(self, zip_code: str) -> bpb.GetRateCardResponse | None:
        """The ZIP's rate versions and the booking fee's; None when billing has no rate for it."""
        try:
            return await self._stub.GetRateCard(
                bpb.GetRateCardRequest(zip=zip_code, include_history=True), timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
                log.info("billing has no rate for %s (%s)", zip_code, err.code().name)
                return None
            raise Unavailable(f"billing could not be asked for the rate of ZIP {zip_code} ({err.code().name}); "
                              "retry", reason="BILLING_UNAVAILABLE") from err

    async def rate_card_page(self, page_token: str) -> bpb.GetRateCardResponse:
        """One page (1000 versions) of the whole card with its history."""
        return await self._stub.GetRateCard(
            bpb.GetRateCardRequest(include_history=True, page_size=1000, page_token=page_token),
            timeout=self._timeout_s)

    async def replay_events(self, since: dt.datetime | None) -> int:
        """Asks billing to publish its events again (all of them without `since`); how many it queued."""
        request = bpb.ReplayEventsRequest(requested_by="routing")
        if since is not None:
            set_stamp(request.since, since)
        reply = await self._stub.ReplayEvents(request, timeout=self._timeout_s)
        return reply.events_queued
