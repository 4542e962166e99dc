"""The payment provider (Stripe, or localstripe in development and tests) through the official `stripe` package's
async client: what the wallet asks it, with its failures sorted into what the wallet does next."""

from __future__ import annotations

import logging
from typing import Any

import stripe

from services.wallet.records import Payment

log = logging.getLogger("callersync.wallet.provider")


class ProviderError(Exception):
    """The provider refused or failed a call. kind: declined (the bank said no), authentication_required (the bank
    wants the cardholder present), transient (retry later), not_found, invalid (a request the provider will never
    accept)."""

    def __init__(self, kind: str, code: str, message: str, payment_intent_id: str = "") -> None:
        super().__init__(f"{kind}: {code}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        # The PaymentIntent a refused charge made (Stripe names it in the error), if any.
        self.payment_intent_id = payment_intent_id


def _sorted_error(err: stripe.StripeError) -> ProviderError:
    code = getattr(err, "code", None) or ""
    message = getattr(err, "user_message", None) or str(err)
    status = err.http_status or 0
    if code == "authentication_required":
        body_of_auth: Any = err.json_body or {}
        intent: Any = (body_of_auth.get("error") or {}).get("payment_intent") or {}
        return ProviderError("authentication_required", code, message,
                             str(intent.get("id") or "") if isinstance(intent, dict) else "")
    if isinstance(err, stripe.CardError) or status == 402:
        body: Any = err.json_body or {}
        decline = (body.get("error") or {}).get("decline_code")
        return ProviderError("declined", decline or code or "card_declined", message)
    if isinstance(err, (stripe.APIConnectionError, stripe.RateLimitError)) or status >= 500 or status == 0:
        return ProviderError("transient", code or type(err).__name__, message)
    if status == 404:
        return ProviderError("not_found", code or "resource_missing", message)
    if isinstance(err, stripe.AuthenticationError):
        # Our key is wrong: nothing a retry of the same request fixes, but an operator will, so keep trying.
        return ProviderError("transient", "authentication", message)
    return ProviderError("invalid", code or type(err).__name__, message)


def payment_of(pi: dict[str, Any]) -> Payment:
    card: dict[str, Any] = {}
    method = pi.get("payment_method")
    if isinstance(method, dict):
        card = method.get("card") or {}
    charge = pi.get("latest_charge")
    received = pi.get("amount_received")
    if received is None:
        # localstripe has no amount_received: what the captured charge took is the same figure.
        received = charge.get("amount", 0) if isinstance(charge, dict) and charge.get("captured") and \
            charge.get("status") == "succeeded" else 0
    error = pi.get("last_payment_error") or {}
    return Payment(
        payment_intent_id=pi["id"],
        status=pi.get("status") or "",
        amount_cents=int(pi.get("amount") or 0),
        received_cents=int(received or 0),
        currency=(pi.get("currency") or "").lower(),
        metadata={str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
        customer_id=pi.get("customer") or "",
        card_brand=str(card.get("brand") or ""),
        card_last4=str(card.get("last4") or ""),
        failure_code=str(error.get("decline_code") or error.get("code") or ""),
        failure_message=str(error.get("message") or ""),
        client_secret=pi.get("client_secret") or "",
    )


class PaymentProvider:
    """One Stripe client per wallet process. Every call is async (the package's aiohttp client), so no handler
    blocks the event loop; the package's own retries are off because the wallet decides when to retry."""

    def __init__(self, api_key: str, api_base: str, publishable_key: str) -> None:
        self.publishable_key = publishable_key
        # Neither a key nor another address than Stripe's: card payments are not set up here (a wallet run by
        # `callersync serve` without CALLERSYNC_STRIPE_*), so nothing is sent to Stripe without a key.
        self.configured = bool(api_key) or api_base.rstrip("/") != "https://api.stripe.com"
        self._http = stripe.AIOHTTPClient()
        self._client = stripe.StripeClient(
            api_key or "sk_test_unset",
            base_addresses={"api": api_base},
            max_network_retries=0,
            http_client=self._http,
        )

    async def _call(self, what: str, call: Any) -> dict[str, Any]:
        try:
            reply = await call
        except stripe.StripeError as err:
            sorted_err = _sorted_error(err)
            log.info("provider refused %s: %s", what, sorted_err)
            raise sorted_err from err
        return reply.to_dict()

    async def create_card_payment(self, amount_cents: int, currency: str, contractor_id: str, top_up_id: str,
                                  email: str) -> Payment:
        params: Any = {
            "amount": amount_cents, "currency": currency, "payment_method_types": ["card"],
            "metadata": {"contractor_id": contractor_id, "top_up_id": top_up_id},
        }
        pi = await self._call("create PaymentIntent", self._client.v1.payment_intents.create_async(
            params=params, options={"idempotency_key": f"top-up:{top_up_id}"}))
        return payment_of(pi)

    async def cancel_payment(self, payment_intent_id: str) -> None:
        """Cancels a PaymentIntent nobody should pay (one that lost a race to be a top-up's)."""
        await self._call("cancel PaymentIntent", self._client.v1.payment_intents.cancel_async(payment_intent_id))

    async def charge_saved_card(self, amount_cents: int, currency: str, contractor_id: str, top_up_id: str,
                                customer_id: str, payment_method_id: str) -> Payment:
        """An off-session PaymentIntent, confirmed at once. A decline or a bank asking for authentication is
        raised as ProviderError; a PaymentIntent left in requires_action (localstripe's answer to 3-D Secure
        cards) is returned as it is."""
        pi = await self._call("charge saved card", self._client.v1.payment_intents.create_async(
            params={
                "amount": amount_cents, "currency": currency, "customer": customer_id,
                "payment_method": payment_method_id, "off_session": True, "confirm": True,
                "metadata": {"contractor_id": contractor_id, "top_up_id": top_up_id},
            },
            options={"idempotency_key": f"auto-top-up:{top_up_id}"},
        ))
        return payment_of(pi)

    async def payment(self, payment_intent_id: str) -> Payment:
        pi = await self._call("retrieve PaymentIntent", self._client.v1.payment_intents.retrieve_async(
            payment_intent_id, params={"expand": ["payment_method", "latest_charge"]}))
        return payment_of(pi)

    async def find_payment(self, customer_id: str, top_up_id: str) -> Payment | None:
        """The PaymentIntent an earlier attempt created for this top-up, if any: how a retry after a crash
        between the provider's answer and our record avoids charging twice (localstripe ignores idempotency
        keys, and real Stripe forgets them after 24 hours)."""
        starting_after = None
        for _ in range(20):
            params: Any = {"limit": 100, "customer": customer_id}
            if starting_after:
                params["starting_after"] = starting_after
            try:
                page = await self._call("list PaymentIntents", self._client.v1.payment_intents.list_async(params))
            except ProviderError as err:
                if err.kind != "invalid":
                    raise
                params.pop("customer")  # localstripe cannot filter by customer: filter here instead
                page = await self._call("list PaymentIntents", self._client.v1.payment_intents.list_async(params))
            for pi in page.get("data", []):
                if (pi.get("metadata") or {}).get("top_up_id") == top_up_id:
                    return await self.payment(pi["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            starting_after = page["data"][-1]["id"]
        return None

    async def create_customer(self, contractor_id: str, email: str) -> str:
        customer = await self._call("create Customer", self._client.v1.customers.create_async(
            params={"email": email, "metadata": {"contractor_id": contractor_id}} if email else
            {"metadata": {"contractor_id": contractor_id}},
            options={"idempotency_key": f"customer:{contractor_id}"},
        ))
        return str(customer["id"])

    async def create_card_setup(self, contractor_id: str, customer_id: str, setup_key: str) -> tuple[str, str]:
        """A SetupIntent for off-session use: (its id, its client secret). setup_key is fresh per card setup, so a
        network-level retry of this one request cannot make a second SetupIntent at Stripe."""
        setup = await self._call("create SetupIntent", self._client.v1.setup_intents.create_async(
            params={"customer": customer_id, "usage": "off_session", "metadata": {"contractor_id": contractor_id}},
            options={"idempotency_key": f"card-setup:{setup_key}"}))
        return str(setup["id"]), str(setup["client_secret"])

    async def card_setup(self, setup_intent_id: str) -> dict[str, Any]:
        """The SetupIntent with its payment method (a dict with its card) in place of the method's id."""
        setup = await self._call("retrieve SetupIntent", self._client.v1.setup_intents.retrieve_async(
            setup_intent_id, params={"expand": ["payment_method"]}))
        method = setup.get("payment_method")
        if isinstance(method, str) and method:
            setup["payment_method"] = await self._call(
                "retrieve PaymentMethod", self._client.v1.payment_methods.retrieve_async(method))
        return setup

    async def close(self) -> None:
        await self._http.close_async()
