"""POST /v1/stripe/webhook: Stripe's events, signature verified, passed to the wallet as a nudge.

The endpoint takes no bearer token: the `Stripe-Signature` header (HMAC of the body with the webhook secret, and a
timestamp no older than five minutes) is the authentication. A missing, forged or stale signature is 400 and the
wallet hears nothing. A genuine event names a PaymentIntent or SetupIntent; the wallet asks Stripe about it itself,
so nothing in the event's body (its amount, its status) is ever trusted.
"""

from __future__ import annotations

import logging

import grpc
import stripe
from aiohttp import web

from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc

log = logging.getLogger("callersync.gateway.stripe")

PATH = "/v1/stripe/webhook"
# The one gRPC method the gateway calls outside its HTTP bindings (the wallet's access table grants it).
CALLS = "callersync.wallet.v1.WalletService.ApplyPaymentEvent"
# What the wallet acts on (docs/payments.md lists them for a Stripe dashboard); anything else is acknowledged.
EVENTS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.canceled",
    "setup_intent.succeeded",
    "setup_intent.setup_failed",
    "setup_intent.canceled",
)
TOLERANCE_S = 300
MAX_BODY_BYTES = 256 * 1024


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def handle(request: web.Request, secret: str, wallet: grpc.aio.Channel | None) -> web.Response:
    if not secret:
        log.error("a Stripe webhook arrived but CALLERSYNC_STRIPE_WEBHOOK_SECRET is not set: refused")
        return _answer(503, "webhooks are not configured here (no webhook secret)")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _answer(413, "event too large")
    body = await request.read()
    signature = request.headers.get("Stripe-Signature", "")
    if not signature:
        log.warning("Stripe webhook without a Stripe-Signature header refused")
        return _answer(400, "missing Stripe-Signature header")
    try:
        event = stripe.Webhook.construct_event(body.decode("utf-8", "replace"), signature, secret,
                                               tolerance=TOLERANCE_S).to_dict()
    except stripe.SignatureVerificationError as err:
        log.warning("Stripe webhook refused: %s", err)
        return _answer(400, "signature verification failed")
    except ValueError:
        return _answer(400, "the body is not a Stripe event")
    kind = str(event.get("type") or "")
    if kind not in EVENTS:
        return _answer(200, f"ignored {kind}")
    obj = (event.get("data") or {}).get("object") or {}
    object_id = str(obj.get("id") or "")
    if not object_id.startswith(("pi_", "seti_")) or wallet is None:
        return _answer(200, f"ignored {kind} without a PaymentIntent or SetupIntent")
    try:
        reply = await wallet_pb2_grpc.WalletServiceStub(wallet).ApplyPaymentEvent(
            wpb.ApplyPaymentEventRequest(event_id=str(event.get("id") or ""), event_type=kind, object_id=object_id),
            timeout=15,
        )
    except grpc.aio.AioRpcError as err:
        # Stripe retries a non-2xx delivery; the wallet's sweeper would find the payment anyway.
        log.warning("Stripe %s %s: the wallet answered %s %s", kind, object_id, err.code().name, err.details())
        return _answer(503, "the wallet could not take the event now; retry")
    outcome = wpb.PaymentEventOutcome.Name(reply.outcome)
    return _answer(200, outcome)
