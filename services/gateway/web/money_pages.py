"""Money: top up by card (Stripe Elements; in development localstripe's stand-in for Stripe.js), the saved card
and auto top-up, and the low-balance alert. The browser talks to the payment provider only to confirm with a
client secret the wallet made; the wallet credits only what the provider confirms."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from services.gateway.web.api import ApiError, seg
from services.gateway.web.render import SECURITY_HEADERS, badge, cents, csrf_field, esc, money, when

if TYPE_CHECKING:
    from services.gateway.web.site import Ctx, WebApp

TOP_UP_STATES = {
    "TOP_UP_STATE_PENDING": ("Waiting for the payment", "wait"),
    "TOP_UP_STATE_REQUIRES_ACTION": ("Your bank asks you to confirm the payment", "wait"),
    "TOP_UP_STATE_CREDITED": ("Paid and credited to your wallet", "good"),
    "TOP_UP_STATE_FAILED": ("The payment failed", "bad"),
    "TOP_UP_STATE_CANCELED": ("Canceled", "bad"),
    "TOP_UP_STATE_REFUSED": ("Refused", "bad"),
}


def stripe_js_url(api_base: str) -> str:
    """Stripe.js for Stripe itself; localstripe serves its stand-in at the same path under its own address."""
    if api_base.rstrip("/") == "https://api.stripe.com":
        return "https://js.stripe.com/v3/"
    return api_base.rstrip("/") + "/js.stripe.com/v3/"


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def payment_page(ctx: Ctx, site: WebApp, title: str, body: str) -> web.Response:
    """A page that loads Stripe.js: the one place the policy admits the provider's script, frames and API."""
    js = stripe_js_url(site.gateway.settings.stripe_api_base)
    response = ctx.page(title, f'<script src="{esc(js)}"></script><script src="/app/static/pay.js" defer></script>'
                        + body)
    origin = _origin(js)
    api = _origin(site.gateway.settings.stripe_api_base)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {origin}; frame-src {origin} https://hooks.stripe.com; "
        f"connect-src 'self' {api} {origin}; img-src 'self' data: {origin}; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    return response


def install(site: WebApp, add: Callable[..., None]) -> None:
    async def money_page(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        base = f"/app/c/{seg(cid)}"
        wallet = (await ctx.api.get(f"/v1/wallets/{seg(cid)}"))["wallet"]
        alert = wallet.get("lowBalanceAlert", {})
        auto = wallet.get("autoTopUp", {})
        threshold = cents(alert.get("thresholdCents"))
        email = alert.get("email") or wallet.get("contactEmail") or ""
        alert_state = (badge(f"Alert on below {money(threshold)}", "good") if threshold
                       else badge("No low-balance alert", "info"))
        card = (f"{esc(auto.get('cardBrand', '').title())} ending {esc(auto['cardLast4'])}" if auto.get("cardLast4")
                else "No card saved")
        auto_state = badge("Auto top-up on", "good") if auto.get("enabled") else badge("Auto top-up off", "info")
        reason = f'<p role="status">{esc(auto["disabledReason"])}</p>' if auto.get("disabledReason") else ""
        csrf = csrf_field(ctx.session.csrf)
        checked = " checked" if auto.get("enabled") else ""
        save_label = "Replace the saved card" if auto.get("cardLast4") else "Save a card"
        body = f"""<section class="cards"><div class="card"><h2>Balance</h2>
<p class="figure" data-testid="balance">{money(wallet.get("balanceCents"))}</p></div></section>
<section aria-labelledby="topup-h"><h2 id="topup-h">Top up by card</h2>
<form method="post" action="{base}/money/topup" class="stack">{csrf}
<input type="hidden" name="key" value="{secrets.token_urlsafe(16)}">
<label for="amount">Amount (dollars, at least $25)</label>
<input id="amount" name="amount" type="number" min="25" step="1" inputmode="numeric" required value="100">
<button type="submit">Continue to card details</button></form></section>
<section aria-labelledby="auto-h"><h2 id="auto-h">Auto top-up</h2>
<p>{auto_state}</p>{reason}<p>Saved card: <span data-testid="saved-card">{card}</span></p>
<form method="post" action="{base}/money/card" class="stack">{csrf}
<button type="submit" class="button secondary">{save_label}</button>
</form>
<form method="post" action="{base}/money/auto" class="stack">{csrf}
<div class="choice"><input type="checkbox" id="auto-on" name="enabled" value="1"{checked}>
<label for="auto-on">Top up automatically: I agree that CallerSync charges my saved card the amount below whenever
my balance falls under the threshold, at most the daily maximum.</label></div>
<label for="auto-threshold">When my balance falls below (dollars; at least my pause line,
{money(wallet.get("pauseThresholdCents"))})</label>
<input id="auto-threshold" name="threshold" type="number" min="0" step="1" inputmode="numeric"
 value="{max(cents(auto.get("thresholdCents")), cents(wallet.get("pauseThresholdCents"))) // 100}">
<label for="auto-amount">Charge (dollars, at least $25)</label>
<input id="auto-amount" name="amount" type="number" min="25" step="1" inputmode="numeric"
 value="{max(cents(auto.get("amountCents")), 2500) // 100}">
<label for="auto-max">At most per day (dollars)</label>
<input id="auto-max" name="max_per_day" type="number" min="25" step="1" inputmode="numeric"
 value="{max(cents(auto.get("maxPerDayCents")), 10000) // 100}">
<label for="auto-email">Receipts and declines to</label>
<input id="auto-email" name="email" type="email" autocomplete="email" value="{esc(email)}">
<button type="submit">Save auto top-up</button></form></section>
<section aria-labelledby="alert-h"><h2 id="alert-h">Low-balance alert</h2><p>{alert_state}</p>
<p>One email when your balance falls below the amount you choose; it re-arms once you top up above it.</p>
<form method="post" action="{base}/money/alert" class="stack">{csrf}
<label for="threshold">Alert me below (dollars; 0 turns it off)</label>
<input id="threshold" name="threshold" type="number" min="0" step="1" inputmode="numeric"
 value="{threshold // 100}">
<label for="alert-email">Email</label>
<input id="alert-email" name="email" type="email" autocomplete="email" value="{esc(email)}">
<button type="submit">Save alert</button></form></section>"""
        return ctx.page("Money", body, current=f"{base}/money")

    def dollars(form: Any, name: str, label: str) -> int:
        try:
            return int(str(form.get(name, "")).strip() or 0) * 100
        except ValueError:
            raise ApiError(400, f"Enter {label} in whole dollars, e.g. 50.") from None

    async def start_top_up(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        form = await ctx.request.post()
        wallet = (await ctx.api.get(f"/v1/wallets/{seg(cid)}"))["wallet"]
        reply = await ctx.api.send("POST", f"/v1/wallets/{seg(cid)}/topUps", {
            "amountCents": str(dollars(form, "amount", "the amount")), "idempotencyKey": str(form.get("key", "")),
            "email": wallet.get("contactEmail", "")})
        top_up = reply["topUp"]
        done = f"/app/c/{seg(cid)}/money/topups/{seg(top_up['topUpId'])}"
        body = f"""<p>Pay {money(top_up.get("amountCents"))} by card. Your wallet is credited as soon as the card
payment goes through.</p>
<form id="pay" class="stack" data-mode="payment" data-key="{esc(reply["publishableKey"])}"
 data-secret="{esc(reply["clientSecret"])}" data-done="{esc(done)}">
<label for="card">Card details</label><div id="card" class="card-field"></div>
<p id="pay-error" role="alert" class="error"></p>
<button type="submit">Pay {money(top_up.get("amountCents"))}</button></form>
<p><a href="{done}">See this top-up's state</a></p>"""
        return payment_page(ctx, site, "Pay by card", body)

    async def top_up_state(ctx: Ctx) -> web.StreamResponse:
        cid, top_up_id = ctx.request.match_info["contractor_id"], ctx.request.match_info["top_up_id"]
        reply = await ctx.api.get(f"/v1/wallets/{seg(cid)}/topUps/{seg(top_up_id)}")
        top_up = reply["topUp"]
        wallet = (await ctx.api.get(f"/v1/wallets/{seg(cid)}"))["wallet"]
        label, tone = TOP_UP_STATES.get(top_up.get("state", ""), ("Unknown", "info"))
        # A client secret comes only to the contractor whose bank waits for them: the page then offers to finish
        # the payment here (and does not reload itself under the bank's confirmation).
        finish = reply.get("clientSecret", "")
        waiting = not finish and top_up.get("state") in ("TOP_UP_STATE_PENDING", "TOP_UP_STATE_REQUIRES_ACTION")
        failure = f"<p>{esc(top_up.get('failureReason'))}</p>" if top_up.get("failureReason") else ""
        here = f"/app/c/{seg(cid)}/money/topups/{seg(top_up_id)}"
        action = f"""<form id="pay" class="stack" data-mode="confirm" data-key="{esc(reply.get("publishableKey", ""))}"
 data-secret="{esc(finish)}" data-method="{esc(reply.get("paymentMethodId", ""))}" data-done="{esc(here)}">
<p>Your bank wants you to confirm this payment of {money(top_up.get("amountCents"))} yourself (3-D Secure).</p>
<p id="pay-error" role="alert" class="error"></p>
<button type="submit">Confirm the payment</button></form>""" if finish else ""
        body = f"""<div data-refresh-ms="{1500 if waiting else 0}"></div>
<p data-testid="top-up-state">{badge(label, tone)}</p>{failure}{action}
<dl class="facts"><dt>Amount</dt><dd>{money(top_up.get("amountCents"))}</dd>
<dt>Credited</dt><dd>{money(top_up.get("creditedCents"))}</dd>
<dt>Card</dt><dd>{esc((top_up.get("cardBrand", "") + " " + top_up.get("cardLast4", "")).strip() or "—")}</dd>
<dt>Started</dt><dd>{esc(when(top_up.get("createdAt", "")))}</dd></dl>
<p>Balance now: <strong data-testid="balance">{money(wallet.get("balanceCents"))}</strong></p>
<p>{"This page refreshes by itself until the payment is settled. " if waiting else ""}
<a href="/app/c/{seg(cid)}/money">Back to Money</a></p>"""
        if finish:
            return payment_page(ctx, site, "Top-up", body)
        response = ctx.page("Top-up", body, current=f"/app/c/{seg(cid)}/money")
        response.headers.update(SECURITY_HEADERS)
        return response

    async def start_card_setup(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        wallet = (await ctx.api.get(f"/v1/wallets/{seg(cid)}"))["wallet"]
        reply = await ctx.api.send("POST", f"/v1/wallets/{seg(cid)}/cardSetups",
                                   {"email": wallet.get("contactEmail", "")})
        done = f"/app/c/{seg(cid)}/money"
        body = f"""<p>Save a card for auto top-up. It is charged only when you turn auto top-up on.</p>
<form id="pay" class="stack" data-mode="setup" data-key="{esc(reply["publishableKey"])}"
 data-secret="{esc(reply["clientSecret"])}" data-done="{esc(done)}">
<label for="card">Card details</label><div id="card" class="card-field"></div>
<p id="pay-error" role="alert" class="error"></p>
<button type="submit">Save card</button></form>"""
        return payment_page(ctx, site, "Save a card", body)

    async def save_auto(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        form = await ctx.request.post()
        enabled = form.get("enabled") == "1"
        body: dict[str, Any] = {"enabled": enabled}
        if enabled:
            body.update(thresholdCents=str(dollars(form, "threshold", "the threshold")),
                        amountCents=str(dollars(form, "amount", "the amount")),
                        maxPerDayCents=str(dollars(form, "max_per_day", "the daily maximum")),
                        email=str(form.get("email", "")))
        await ctx.api.send("PUT", f"/v1/wallets/{seg(cid)}/autoTopUp", body)
        raise web.HTTPSeeOther(f"/app/c/{seg(cid)}/money")

    async def save_alert(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        form = await ctx.request.post()
        await ctx.api.send("PUT", f"/v1/wallets/{seg(cid)}/lowBalanceAlert",
                           {"thresholdCents": str(dollars(form, "threshold", "the alert amount")),
                            "email": str(form.get("email", ""))})
        raise web.HTTPSeeOther(f"/app/c/{seg(cid)}/money")

    add("/money", "contractor.money", money_page)
    add("/money/topup", "contractor.start_top_up", start_top_up, "POST")
    add("/money/topups/{top_up_id}", "contractor.top_up", top_up_state)
    add("/money/card", "contractor.start_card_setup", start_card_setup, "POST")
    add("/money/auto", "contractor.save_auto", save_auto, "POST")
    add("/money/alert", "contractor.save_alert", save_alert, "POST")
