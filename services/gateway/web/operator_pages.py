"""The operator console: the refund review queue (oldest first) with the evidence packet, contractor lookup,
the rate card and the blocklist. Operators only (the session's role, and the API's own scopes behind it)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from services.gateway.web import blocked_pages, media_pages, rate_preview, words
from services.gateway.web.api import Api, ApiError, seg
from services.gateway.web.contractor_pages import (
    CALL_HEADERS,
    CHARGE_HEADERS,
    call_rows,
    charge_rows,
    evidence_packet,
)
from services.gateway.web.render import badge, cents, csrf_field, esc, moment, money, stamp, table, when
from services.runtime.money import decimal_dollars

if TYPE_CHECKING:
    from services.gateway.web.site import Ctx, WebApp


async def pending_oldest_first(api: Api) -> list[dict[str, Any]]:
    """The API lists newest first; the queue is worked oldest first, so read every page and turn it round."""
    cases: list[dict[str, Any]] = []
    token = ""
    while True:
        reply = await api.get("/v1/refundCases", state="REFUND_STATE_PENDING_REVIEW", pageSize=500, pageToken=token)
        cases += reply.get("refundCases", [])
        token = reply.get("nextPageToken", "")
        if not token or len(cases) >= 5000:
            break
    return list(reversed(cases))


async def charge_of(api: Api, contractor_id: str, charge_id: str) -> dict[str, Any] | None:
    token = ""
    for _ in range(20):
        reply = await api.get(f"/v1/contractors/{seg(contractor_id)}/charges", pageSize=500, pageToken=token)
        for charge in reply.get("charges", []):
            if charge["chargeId"] == charge_id:
                return charge
        token = reply.get("nextPageToken", "")
        if not token:
            break
    return None


def dollars_to_cents(text: str) -> int:
    try:
        return round(float(text) * 100)
    except ValueError:
        raise ApiError(400, f"{text!r} is not an amount in dollars, e.g. 45.00") from None


def _waiting(stamp: str) -> str:
    hours = int((dt.datetime.now(dt.UTC) - moment(stamp)).total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"


def utc_moment(raw: str) -> dt.datetime | None:
    """A datetime-local field's value, read as UTC; None when empty."""
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ApiError(400, f"{raw!r} is not a date and time like 2025-06-01T09:00") from None


async def scheduled_rates(api: Api, now: dt.datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """ZIP rate and booking fee versions that take effect after now (the rate card with its history)."""
    rates: list[dict[str, Any]] = []
    fees: list[dict[str, Any]] = []
    token = ""
    for _ in range(20):
        reply = await api.get("/v1/rateCard", includeHistory="true", pageSize=1000, pageToken=token)
        rates += [r for r in reply.get("rates", []) if _after(r.get("effectiveFrom", ""), now)]
        fees = [f for f in reply.get("bookingFeeHistory", []) if _after(f.get("effectiveFrom", ""), now)]
        token = reply.get("nextPageToken", "")
        if not token:
            break
    return rates, fees


def _after(stamp: str, now: dt.datetime) -> bool:
    return bool(stamp) and moment(stamp) > now


async def scheduled_rows(api: Api, now: dt.datetime) -> list[list[str]]:
    rates, fees = await scheduled_rates(api, now)
    rows = [(r.get("effectiveFrom", ""), [esc(r["zip"]), esc(money(r.get("rateCents"))),
                                          esc(when(r.get("effectiveFrom", ""))), esc(r.get("setBy", ""))])
            for r in rates]
    rows += [(f.get("effectiveFrom", ""), [esc("AI booking fee"), esc(money(f.get("feeCents"))),
                                           esc(when(f.get("effectiveFrom", ""))), esc(f.get("setBy", ""))])
             for f in fees]
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def install(site: WebApp, app: web.Application) -> None:
    async def queue(ctx: Ctx) -> web.StreamResponse:
        cases = await pending_oldest_first(ctx.api)
        rows = [[esc(when(c.get("requestedAt", ""))), esc(_waiting(c.get("requestedAt", ""))),
                 f'<a href="/app/ops/contractors?id={seg(c["contractorId"])}">{esc(c["contractorId"])}</a>',
                 esc(words.REASON_LABELS.get(c.get("reason", ""), "")), esc(money(c.get("amountCents"))),
                 f'<a class="button" href="/app/ops/cases/{seg(c["refundCaseId"])}">Review</a>'] for c in cases]
        body = ("<p>Refund requests waiting for an operator, the oldest first.</p>"
                + table("Refund review queue", ["Asked", "Waiting", "Contractor", "Reason", "Amount", ""], rows,
                        empty="Nothing is waiting for review."))
        return ctx.page("Refund queue", body, current="/app/ops/")

    async def case(ctx: Ctx) -> web.StreamResponse:
        case_id = ctx.request.match_info["case_id"]
        c = (await ctx.api.get(f"/v1/refundCases/{seg(case_id)}"))["refundCase"]
        charge = await charge_of(ctx.api, c["contractorId"], c["chargeId"])
        packet = ""
        if charge is not None:
            story = await ctx.api.get(f"/v1/calls/{seg(charge['callId'])}:explain")
            media = await media_pages.section(site.gateway.media, story, media_pages.operator_base(charge["callId"]))
            packet = evidence_packet(story, c["contractorId"], media, operator=True)
        label, tone = words.refund_state(c)
        asked = c.get("amountCents")
        first_amount = ""
        waiting = ""
        if c.get("firstApprover"):
            first_amount = decimal_dollars(cents(c.get("firstApprovedCents")))
            waiting = ("<p data-testid=\"first-approval\">" + badge(
                f"Approved by {c['firstApprover']} for {money(c.get('firstApprovedCents'))}: "
                "waiting for a second operator to confirm", "wait") + "</p>")
        elif cents(asked) > site.config.second_approval_cents:
            waiting = (f"<p>Above {money(site.config.second_approval_cents)}: an approval needs a second operator "
                       "to confirm it before any money moves.</p>")
        decide = ""
        if c.get("state") == "REFUND_STATE_PENDING_REVIEW":
            decide = f"""<form method="post" action="/app/ops/cases/{seg(case_id)}/resolve" class="stack">
{csrf_field(ctx.session.csrf)}<fieldset><legend>Decision</legend>
<div class="choice"><input type="radio" id="approve" name="resolution" value="REFUND_RESOLUTION_APPROVE" required>
<label for="approve">Approve: credit {money(c.get("amountCents"))}
{"and block the caller" if c.get("reason") == "REFUND_REASON_SPAM" else ""}</label></div>
<div class="choice"><input type="radio" id="deny" name="resolution" value="REFUND_RESOLUTION_DENY">
<label for="deny">Reject</label></div></fieldset>
<label for="amount">Approve in part: dollars to refund (empty for all {money(asked)})</label>
<input id="amount" name="amount" type="number" min="0.01" step="0.01" max="{decimal_dollars(cents(asked))}"
 inputmode="decimal" value="{first_amount}">
<label for="note">Reason (the contractor reads this)</label>
<textarea id="note" name="note" rows="3" required maxlength="2000"></textarea>
<button type="submit">Record decision</button></form>"""
        body = f"""<p><a href="/app/ops/">← Refund queue</a></p>
<dl class="facts"><dt>State</dt><dd data-testid="case-state">{badge(label, tone)}</dd>
<dt>Contractor</dt><dd>{esc(c["contractorId"])}</dd>
<dt>Reason</dt><dd>{esc(words.REASON_LABELS.get(c.get("reason", ""), ""))}</dd>
<dt>Their words</dt><dd>{esc(c.get("note") or "—")}</dd>
<dt>Amount</dt><dd>{money(c.get("amountCents"))}</dd>
<dt>Asked</dt><dd>{esc(when(c.get("requestedAt", "")))}</dd></dl>{waiting}{decide}{packet}"""
        return media_pages.admit_media(ctx.page(f"Refund case {case_id[:8]}", body, current="/app/ops/"),
                                       site.gateway.media)

    async def resolve(ctx: Ctx) -> web.StreamResponse:
        case_id = ctx.request.match_info["case_id"]
        form = await ctx.request.post()
        resolution = str(form.get("resolution", ""))
        if resolution not in ("REFUND_RESOLUTION_APPROVE", "REFUND_RESOLUTION_DENY"):
            raise ApiError(400, "Choose approve or reject.")
        body = {"resolution": resolution, "reviewer": ctx.principal.subject, "note": str(form.get("note", ""))[:2000]}
        if resolution == "REFUND_RESOLUTION_APPROVE" and str(form.get("amount", "")).strip():
            body["amountCents"] = str(dollars_to_cents(str(form.get("amount"))))
        await ctx.api.send("POST", f"/v1/refundCases/{seg(case_id)}:resolve", body)
        raise web.HTTPSeeOther(f"/app/ops/cases/{seg(case_id)}")

    async def contractors(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.query.get("id", "").strip()
        form = f"""<form method="get" class="stack inline"><label for="cid">Contractor id</label>
<input id="cid" name="id" value="{esc(cid)}" required><button type="submit">Look up</button></form>"""
        if not cid:
            return ctx.page("Contractors", form, current="/app/ops/contractors")
        api = ctx.api
        try:
            wallet = (await api.get(f"/v1/wallets/{seg(cid)}"))["wallet"]
        except ApiError as err:
            if err.status != 404:
                raise
            wallet = None
        claims = (await api.get(f"/v1/contractors/{seg(cid)}/claims", pageSize=500))["claims"]
        calls = (await api.get(f"/v1/contractors/{seg(cid)}/calls", pageSize=20)).get("calls", [])
        charges = (await api.get(f"/v1/contractors/{seg(cid)}/charges", pageSize=20))["charges"]
        entries = ((await api.get(f"/v1/wallets/{seg(cid)}/entries", pageSize=20))["entries"] if wallet else [])
        summary = ("<p>No wallet.</p>" if wallet is None else
                   f"""<dl class="facts"><dt>Balance</dt><dd>{money(wallet.get("balanceCents"))}</dd>
<dt>Available</dt><dd>{money(wallet.get("availableCents"))}</dd>
<dt>Status</dt><dd>{badge("Paused", "bad") if wallet.get("paused") else badge("Receiving calls", "good")}</dd>
<dt>Pause line</dt><dd>{money(wallet.get("pauseThresholdCents"))}</dd>
<dt>Contact</dt><dd>{esc(wallet.get("contactEmail") or "—")}</dd></dl>""")
        claim_rows = [[esc(c["zip"]), esc(c.get("position", "").removeprefix("CLAIM_POSITION_").title()),
                       esc(money(c.get("rateCents")))] for c in claims]
        entry_rows = [[esc(when(e.get("createdAt", ""))), esc(e.get("kind", "").removeprefix("ENTRY_KIND_")),
                       esc(money(e.get("amountCents"))), esc(money(e.get("balanceAfterCents"))),
                       esc(e.get("description") or e.get("reference") or "")] for e in entries]
        base = f"/app/c/{seg(cid)}"
        body = (form + f"<h2>{esc(cid)}</h2>" + summary
                + "<h2>Claims</h2>" + table("Claims", ["ZIP", "Position", "Rate"], claim_rows, empty="No claims.")
                + "<h2>Recent calls</h2>"
                + table("Calls, billable and free", CALL_HEADERS, call_rows(calls, base, words.named(cid)),
                        empty="No calls yet.")
                + "<h2>Recent charges</h2>"
                + table("Charges", CHARGE_HEADERS, charge_rows(charges, base, words.named(cid)))
                + "<h2>Recent ledger entries</h2>"
                + table("Ledger", ["When", "Kind", "Amount", "Balance after", "Reference"], entry_rows)
                + f'<p><a class="button secondary" href="{base}/">Open their dashboard</a></p>'
                + f"""<h2>Manual credit</h2><p>Money received outside card payments (a bank transfer, a cheque).
The reason is shown in their ledger.</p>
<form method="post" action="/app/ops/contractors/{seg(cid)}/credit" class="stack">{csrf_field(ctx.session.csrf)}
<input type="hidden" name="key" value="{secrets.token_urlsafe(16)}">
<label for="credit-amount">Amount (dollars, at least $25)</label>
<input id="credit-amount" name="amount" type="number" min="25" step="0.01" inputmode="decimal" required>
<label for="credit-ref">Payment reference (transfer id, cheque number)</label>
<input id="credit-ref" name="reference" required>
<label for="credit-reason">Reason</label><input id="credit-reason" name="reason" required>
<button type="submit">Credit wallet</button></form>""")
        return ctx.page("Contractors", body, current="/app/ops/contractors")

    async def credit(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        form = await ctx.request.post()
        await ctx.api.send("POST", f"/v1/wallets/{seg(cid)}:topUp", {
            "amountCents": str(dollars_to_cents(str(form.get("amount", "")))),
            "paymentReference": str(form.get("reference", "")), "idempotencyKey": str(form.get("key", "")),
            "reason": f"{str(form.get('reason', ''))} (by {ctx.principal.subject})"})
        raise web.HTTPSeeOther(f"/app/ops/contractors?id={seg(cid)}")

    async def rates(ctx: Ctx) -> web.StreamResponse:
        query = ctx.request.query
        now = dt.datetime.now(dt.UTC)
        preview = ""
        if query.get("zip") and query.get("rate"):
            preview = await rate_preview.preview(ctx.api, query["zip"], dollars_to_cents(query["rate"]),
                                                 utc_moment(query.get("from", "")) or now, now)
        card = await ctx.api.get("/v1/rateCard", pageSize=1000)
        rows = [[esc(r["zip"]), esc(money(r.get("rateCents"))), esc(when(r.get("effectiveFrom", ""))),
                 esc(r.get("setBy", ""))] for r in card.get("rates", [])]
        body = f"""<p>Booking fee (AI agent mode): {money(card.get("bookingFee", {}).get("feeCents"))}.</p>
{table("Rates in effect", ["ZIP", "Rate", "In effect from", "Set by"], rows, empty="No ZIP is priced.")}
<h2>Scheduled</h2>
{table("Scheduled rates", ["ZIP", "Rate", "Takes effect", "Set by"], await scheduled_rows(ctx.api, now),
       empty="No rate or fee change is scheduled.")}
<h2>Set a rate</h2>
<form method="post" action="/app/ops/rates" class="stack">{csrf_field(ctx.session.csrf)}
<label for="zip">ZIP</label><input id="zip" name="zip" inputmode="numeric" pattern="[0-9]{{5}}" required>
<label for="rate">Rate per billable call (dollars)</label>
<input id="rate" name="rate" type="number" min="0.01" step="0.01" required>
<label for="from">In effect from (UTC; empty for now)</label><input id="from" name="from" type="datetime-local">
<button type="submit">Set rate</button></form>
<h2>Before you change a rate: who would pause?</h2>
<form method="get" action="/app/ops/rates" class="stack">
<label for="pzip">ZIP</label><input id="pzip" name="zip" inputmode="numeric" pattern="[0-9]{{5}}" required
 value="{esc(ctx.request.query.get("zip", ""))}">
<label for="prate">New rate (dollars)</label><input id="prate" name="rate" type="number" min="0.01" step="0.01" required
 value="{esc(ctx.request.query.get("rate", ""))}">
<label for="pfrom">In effect from (UTC; empty for now)</label>
<input id="pfrom" name="from" type="datetime-local" value="{esc(ctx.request.query.get("from", ""))}">
<button type="submit" class="button secondary">Show who would pause</button></form>{preview}"""
        return ctx.page("Rate card", body, current="/app/ops/rates")

    async def set_rate(ctx: Ctx) -> web.StreamResponse:
        form = await ctx.request.post()
        rate_cents = dollars_to_cents(str(form.get("rate", "")))
        effective = utc_moment(str(form.get("from", ""))) or dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        await ctx.api.send("PUT", f"/v1/zips/{seg(str(form.get('zip', '')))}/rate", {
            "rateCents": str(rate_cents), "effectiveFrom": stamp(effective),
            "setBy": ctx.principal.subject})
        raise web.HTTPSeeOther("/app/ops/rates")

    def add(path: str, name: str, handler: Any, method: str = "GET") -> None:
        app.router.add_route(method, "/app/ops" + path, site.guarded(name, handler, operator=True))

    add("/", "operator.queue", queue)
    add("/cases/{case_id}", "operator.case", case)
    add("/cases/{case_id}/resolve", "operator.resolve", resolve, "POST")
    add("/contractors", "operator.contractors", contractors)
    add("/contractors/{contractor_id}/credit", "operator.credit", credit, "POST")
    add("/rates", "operator.rates", rates)
    add("/rates", "operator.set_rate", set_rate, "POST")
    blocked_pages.install(add)
