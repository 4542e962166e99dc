"""Money in through the payment provider: card top-ups, the verified credit, the sweeper that asks the provider about
top-ups still pending, the auto top-up charger, and saved cards. The provider's word is the only one trusted: a
webhook only says which object to ask about."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

from services.runtime.background import Loop, Waker
from services.runtime.errors import AlreadyExists, FailedPrecondition, Unavailable
from services.runtime.fault import FaultHook
from services.wallet import ledger, top_ups
from services.wallet.payment_storage import PaymentStore
from services.wallet.provider import Payment, PaymentProvider, ProviderError
from services.wallet.records import ClaimedAutoTopUp, TopUp

log = logging.getLogger("callersync.wallet.payments")
refusals = logging.getLogger("callersync.wallet.payments.refused")


class PaymentDesk:
    def __init__(self, store: PaymentStore, provider: PaymentProvider, *, dashboard_url: str, sweep_interval_ms: int,
                 sweep_after_ms: int, retry_base_ms: int, lease_ms: int = 60_000,
                 fault: FaultHook | None = None) -> None:
        self._store = store
        self.provider = provider
        self._dashboard_url = dashboard_url.rstrip("/")
        self._sweep_after_ms = sweep_after_ms
        self._retry_base_ms = retry_base_ms
        self._lease_ms = lease_ms
        self._fault = fault or FaultHook(None)
        self._sweep_waker = Waker(sweep_interval_ms / 1000.0)
        self._charge_waker = Waker(sweep_interval_ms / 1000.0)
        self._sweeper = Loop("payment sweeper", self.sweep_once, self._sweep_waker.wait, retry_s=1.0)
        self._charger = Loop("auto top-up charger", self.charge_once, self._charge_waker.wait, retry_s=1.0)

    def start(self) -> None:
        self._sweeper.start()
        self._charger.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        await self._charger.stop()
        await self.provider.close()

    def nudge_charger(self) -> None:
        self._charge_waker.nudge()

    # ------------------------------------------------------------------ card top-ups

    async def start_top_up(self, contractor_id: str, amount_cents: int, email: str, key: str,
                           request_hash: bytes) -> tuple[TopUp, str]:
        """The top-up under key and its PaymentIntent's client secret (created now, or the one made before)."""
        self.require_configured()
        top_up = await self._store.start_card_top_up(str(uuid.uuid4()), contractor_id, amount_cents,
                                                     top_ups.CURRENCY, email, key, request_hash)
        if top_up.request_hash != request_hash:
            raise AlreadyExists(
                f"idempotency key {key!r} already started top-up {top_up.top_up_id} with different parameters; "
                "send a new key for a new top-up", reason="IDEMPOTENCY_KEY_REUSED")
        top_up_id = str(top_up.top_up_id)
        payment_intent_id = top_up.payment_intent_id
        if payment_intent_id:
            payment = await self._ask(lambda: self.provider.payment(payment_intent_id))
        else:
            payment = await self._ask(lambda: self.provider.create_card_payment(
                amount_cents, top_ups.CURRENCY, contractor_id, top_up_id, email))
            top_up = await self._store.attach_payment(top_up_id, payment.payment_intent_id)
            recorded = top_up.payment_intent_id
            if recorded != payment.payment_intent_id:
                # A concurrent retry of this key recorded its PaymentIntent first: ours must never be paid (it
                # would credit nothing), so every caller gets the recorded one's client secret.
                await self._cancel_orphan(payment.payment_intent_id, top_up_id)
                assert recorded is not None  # attach_payment keeps the first PaymentIntent recorded
                payment = await self._ask(lambda: self.provider.payment(recorded))
        return top_up, payment.client_secret

    async def _cancel_orphan(self, payment_intent_id: str, top_up_id: str) -> None:
        try:
            await self.provider.cancel_payment(payment_intent_id)
        except ProviderError as err:
            # Nobody was given its client secret, so it stays unpaid; if it is paid anyway, apply_payment records
            # the refusal and reconcile fails on it.
            log.warning("could not cancel %s, made for top-up %s by a concurrent retry: %s", payment_intent_id,
                        top_up_id, err)

    def require_configured(self) -> None:
        if not self.provider.configured:
            raise FailedPrecondition(
                "card payments are not configured on this wallet: set CALLERSYNC_STRIPE_API_KEY (docs/payments.md), "
                "or credit by hand as an operator (TopUp with a reason)", reason="PAYMENTS_NOT_CONFIGURED")

    async def _ask(self, call):  # type: ignore[no-untyped-def]
        self.require_configured()
        try:
            return await call()
        except ProviderError as err:
            if err.kind == "transient":
                raise Unavailable(f"the payment provider is unreachable ({err.code}); retry shortly") from err
            raise FailedPrecondition(f"the payment provider refused: {err.message}", reason="PROVIDER_REFUSED") from err

    # ------------------------------------------------------------------ the verified credit

    async def apply_payment(self, payment_intent_id: str, source: str) -> tuple[str, str]:
        """Asks the provider about the PaymentIntent and credits its top-up if it succeeded, once. Returns
        (outcome, top_up_id): credited, already_credited, recorded, refused or unknown."""
        self.require_configured()
        try:
            payment = await self.provider.payment(payment_intent_id)
        except ProviderError as err:
            if err.kind == "not_found":
                refusals.warning("payment %s (%s): the provider does not know it; nothing credited",
                                 payment_intent_id, source)
                return "unknown", ""
            raise
        top_up = await self._store.top_up_of_payment(payment_intent_id)
        if top_up is None:
            named = payment.metadata.get("top_up_id", "")
            top_up = await self.top_up(named) if named else None
            if top_up is not None and top_up.payment_intent_id not in (None, payment_intent_id):
                await self._refuse(payment, source, f"it names top-up {named}, which is paid by "
                                                    f"{top_up.payment_intent_id}")
                return "refused", named
        if top_up is None:
            refusals.warning("payment %s (%s) is no top-up of ours (metadata %s); nothing credited",
                             payment_intent_id, source, payment.metadata)
            if payment.metadata.get("top_up_id"):  # made as one of ours, for a top-up we have no record of
                await self._store.record_refusal(payment, "it names a top-up the wallet has no record of")
            return "unknown", ""
        return await self._apply(top_up, payment, source)

    async def _refuse(self, payment: Payment, source: str, why: str) -> None:
        if payment.status == "canceled":  # can never be paid (one a StartTopUp race left): nothing to settle
            log.info("payment %s (%s), canceled, credits nothing: %s", payment.payment_intent_id, source, why)
            return
        refusals.warning("payment %s (%s) refused: %s; nothing credited", payment.payment_intent_id, source, why)
        await self._store.record_refusal(payment, why)

    async def _apply(self, top_up: TopUp, payment: Payment, source: str) -> tuple[str, str]:
        top_up_id = str(top_up.top_up_id)
        if top_up.state == "credited":
            return "already_credited", top_up_id
        judged = top_ups.verdict(top_up.contractor_id, top_up.amount_cents, top_up.currency, top_up_id, payment)
        if judged.action == "refuse":
            await self._refuse(payment, source, f"top-up {top_up_id}: {judged.why}")
            if top_up.payment_intent_id in (None, payment.payment_intent_id):
                await self._store.record_state(top_up_id, "refused", "mismatch", judged.why)
            return "refused", top_up_id
        if top_up.payment_intent_id is None:
            await self._store.attach_payment(top_up_id, payment.payment_intent_id)
        if judged.action == "record":
            await self._record(top_up, payment, judged.state)
            return "recorded", top_up_id
        self._fault.crash_point()
        credit = await self._store.credit(top_up_id, payment.payment_intent_id, payment.received_cents,
                                          payment.card_brand, payment.card_last4)
        if credit.outcome == "credited":
            log.info("credited top-up %s of %s: %d cents from %s (%s)", top_up_id, top_up.contractor_id,
                     payment.received_cents, payment.payment_intent_id, source)
            return "credited", top_up_id
        if credit.outcome == "already_credited":
            return "already_credited", top_up_id
        await self._refuse(payment, source, f"top-up {top_up_id}: {credit.outcome}")
        return "refused", top_up_id

    async def _record(self, top_up: TopUp, payment: Payment, state: str) -> None:
        top_up_id = str(top_up.top_up_id)
        reason = top_ups.plain_decline(payment.failure_code) if state == "failed" else ""
        if top_up.origin == "auto" and state in ("failed", "requires_action") and top_up.state != state:
            code = payment.failure_code or ("authentication_required" if state == "requires_action" else "")
            await self._store.auto_failed(top_up_id, state, code, top_ups.plain_decline(code),
                                          self._link(top_up.contractor_id, top_up_id))
            return
        if top_up.state != state:
            await self._store.record_state(top_up_id, state, payment.failure_code, reason, payment.card_brand,
                                           payment.card_last4)

    def _link(self, contractor_id: str, top_up_id: str) -> str:
        """The web app's page of the top-up, where the contractor finishes a payment their bank wants confirmed."""
        return f"{self._dashboard_url}/app/c/{quote(contractor_id, safe='')}/money/topups/{top_up_id}"

    async def to_finish(self, top_up: TopUp) -> tuple[str, str]:
        """(client secret, saved card) with which the contractor, present, finishes a payment their bank wants
        confirmed; ('', '') when there is none to finish."""
        if top_up.state != "requires_action" or not top_up.payment_intent_id:
            return "", ""
        if not self.provider.configured:
            return "", ""
        try:
            payment = await self.provider.payment(top_up.payment_intent_id)
        except ProviderError as err:
            # The top-up itself is ours to show; only the means to finish it needs the provider, so an outage
            # costs the contractor the button, not the page.
            log.warning("top-up %s: cannot ask the provider how to finish %s: %s", top_up.top_up_id,
                        top_up.payment_intent_id, err)
            return "", ""
        if payment.status not in ("requires_action", "requires_payment_method", "requires_confirmation"):
            return "", ""
        method = ""
        if top_up.origin == "auto":
            settings = await self._store.auto_settings(top_up.contractor_id)
            method = settings.payment_method_id if settings is not None else ""
        return payment.client_secret, method

    async def sweep_once(self) -> int:
        """Asks the provider about every top-up still open, so a lost webhook never loses money."""
        if not self.provider.configured:
            return 0
        done = 0
        for top_up in await self._store.due_for_sweep(self._sweep_after_ms):
            assert top_up.payment_intent_id is not None  # due_for_sweep asks only about known PaymentIntents
            try:
                outcome, _ = await self.apply_payment(top_up.payment_intent_id, "sweeper")
            except ProviderError as err:
                log.info("sweeper: provider unavailable for %s: %s", top_up.payment_intent_id, err)
                outcome = "recorded"
            if outcome == "recorded":
                await self._store.swept(str(top_up.top_up_id), self._sweep_after_ms)
            done += 1
        return done

    # ------------------------------------------------------------------ auto top-up

    async def charge_once(self) -> int:
        """Makes the provider call of every auto top-up waiting for one (at most one per wallet exists)."""
        if not self.provider.configured:
            return 0
        claimed = await self._store.claim_auto(self._lease_ms)
        for claim in claimed:
            await self._charge(claim)
        return len(claimed)

    async def _charge(self, claim: ClaimedAutoTopUp) -> None:
        top_up = claim.top_up
        top_up_id = str(top_up.top_up_id)
        if not claim.auto_enabled or not claim.payment_method_id:
            await self._store.record_state(top_up_id, "canceled", "auto_top_up_off",
                                           "auto top-up was turned off before the charge")
            return
        try:
            payment = None
            if top_up.attempts > 1:  # an earlier attempt may have reached the provider before we recorded it
                payment = await self.provider.find_payment(claim.customer_id, top_up_id)
            if payment is None:
                payment = await self.provider.charge_saved_card(
                    top_up.amount_cents, top_up.currency, top_up.contractor_id, top_up_id,
                    claim.customer_id, claim.payment_method_id)
        except ProviderError as err:
            if err.kind == "transient":
                delay = top_ups.backoff_ms(top_up.attempts, self._retry_base_ms)
                log.warning("auto top-up %s: transient provider error (%s); retry in %d ms", top_up_id, err, delay)
                await self._store.retry_later(top_up_id, delay, err.code, err.message)
                return
            state = "requires_action" if err.kind == "authentication_required" else "failed"
            log.info("auto top-up %s of %s: %s", top_up_id, top_up.contractor_id, err)
            if err.payment_intent_id:  # Stripe keeps it, for the contractor to confirm while present
                await self._store.attach_payment(top_up_id, err.payment_intent_id)
            await self._store.auto_failed(top_up_id, state, err.code, top_ups.plain_decline(err.code),
                                          self._link(top_up.contractor_id, top_up_id))
            return
        self._fault.crash_point()
        fresh = await self._store.attach_payment(top_up_id, payment.payment_intent_id)
        if payment.status == "succeeded":
            try:  # asked again with its card expanded, for the receipt; the sweeper asks if this fails
                payment = await self.provider.payment(payment.payment_intent_id)
            except ProviderError as err:
                log.info("auto top-up %s: provider unavailable after the charge (%s); the sweeper will ask",
                         top_up_id, err)
                return
        await self._apply(fresh, payment, "auto top-up")

    async def top_up(self, top_up_id: str) -> TopUp | None:
        try:
            uuid.UUID(top_up_id)
        except ValueError:
            return None
        return await self._store.top_up(top_up_id)

    async def set_auto_top_up(self, contractor_id: str, wanted: top_ups.AutoTopUpSettings, max_per_hour: int) -> str:
        outcome = await self._store.set_auto_top_up(contractor_id, wanted.enabled, wanted.threshold_cents,
                                                    wanted.amount_cents, wanted.max_per_day_cents, max_per_hour,
                                                    wanted.email)
        self.nudge_charger()  # a balance already below the new threshold started one
        return outcome

    # ------------------------------------------------------------------ saved cards

    async def start_card_setup(self, contractor_id: str, email: str) -> tuple[str, str]:
        self.require_configured()
        if not await self._store.wallet_exists(contractor_id):
            raise ledger.no_wallet(contractor_id)
        settings = await self._store.auto_settings(contractor_id)
        customer_id = settings.customer_id if settings is not None else ""
        if not customer_id:
            created = await self._ask(lambda: self.provider.create_customer(contractor_id, email))
            customer_id = await self._store.keep_customer(contractor_id, created)
        setup_id, secret = await self._ask(lambda: self.provider.create_card_setup(contractor_id, customer_id,
                                                                                   str(uuid.uuid4())))
        await self._store.add_card_setup(setup_id, contractor_id, customer_id)
        return setup_id, secret

    async def apply_card_setup(self, setup_intent_id: str, source: str) -> str:
        """Asks the provider about a SetupIntent of ours; a succeeded one saves its card. Returns card_saved,
        recorded or unknown."""
        self.require_configured()
        setup = await self._store.card_setup(setup_intent_id)
        if setup is None:
            refusals.warning("card setup %s (%s) is none of ours; ignored", setup_intent_id, source)
            return "unknown"
        try:
            described = await self.provider.card_setup(setup_intent_id)
        except ProviderError as err:
            if err.kind == "not_found":
                return "unknown"
            raise
        if (described.get("metadata") or {}).get("contractor_id") != setup.contractor_id or \
                described.get("customer") != setup.customer_id:
            refusals.warning("card setup %s (%s) does not match its contractor or customer; ignored",
                             setup_intent_id, source)
            return "unknown"
        status = described.get("status")
        if status == "succeeded":
            method = described.get("payment_method") or {}
            card = method.get("card") or {}
            await self._store.card_setup_done(setup_intent_id, "succeeded", method.get("id", ""),
                                              str(card.get("brand") or ""), str(card.get("last4") or ""))
            return "card_saved"
        if status == "canceled":
            await self._store.card_setup_done(setup_intent_id, "failed")
        return "recorded"

    async def settle_card_setups(self, contractor_id: str) -> None:
        """Asks the provider about the contractor's card setups still pending (a lost webhook must not keep a
        saved card from being used)."""
        if not self.provider.configured:
            return
        for setup_intent_id in await self._store.pending_card_setups(contractor_id):
            try:
                await self.apply_card_setup(setup_intent_id, "set auto top-up")
            except ProviderError as err:
                log.info("card setup %s: provider unavailable: %s", setup_intent_id, err)
