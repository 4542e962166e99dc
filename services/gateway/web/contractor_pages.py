"""The contractor's pages: overview, calls and charges (with the evidence packet and refund requests), ledger,
ZIPs, money. Every figure comes from the API with the contractor's own scope."""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from services.gateway.web import chart, csv_export, media_pages, words
from services.gateway.web.api import ApiError, seg
from services.gateway.web.render import badge, cents, csrf_field, esc, moment, money, seconds, table, when

if TYPE_CHECKING:
    from services.gateway.web.site import Ctx, WebApp

PAGE_SIZE = 25


def _cid(ctx: Ctx) -> str:
    return ctx.request.match_info["contractor_id"]


def _base(cid: str) -> str:
    return f"/app/c/{seg(cid)}"


async def _optional(call: Any, default: Any) -> Any:
    try:
        return await call
    except ApiError as err:
        if err.status == 404:
            return default
        raise


def pause_line(wallet: dict[str, Any], claims: list[dict[str, Any]], mode: str, fee_cents: int) -> str:
    """Which figure sets the pause line, in words."""
    threshold = cents(wallet.get("pauseThresholdCents"))
    if not claims:
        return "You claim no ZIPs, so there is no pause line."
    dearest = max(claims, key=lambda c: cents(c.get("rateCents")))
    if mode == "CONTRACTOR_MODE_AI_AGENT" and fee_cents >= cents(dearest.get("rateCents")):
        return f"Your pause line is {money(threshold)}: the AI booking fee, higher than any of your ZIPs' rates."
    return (f"Your pause line is {money(threshold)}: the rate of ZIP {esc(dearest['zip'])}, "
            "your most expensive claimed ZIP.")


def runway_words(forecast: dict[str, Any]) -> str:
    lookback = int(forecast.get("lookbackDays") or 14)
    average = money(forecast.get("averageDailySpendCents"))
    if forecast.get("paused"):
        return "You are paused now: top up above your pause line to get calls again."
    if forecast.get("runwayDays") is None:
        return f"You spent nothing in the last {lookback} days, so there is no forecast."
    days = int(forecast["runwayDays"])
    reach = "today" if days == 0 else f"in about {days} day" + ("" if days == 1 else "s")
    return f"At your last {lookback} days' spend ({average} a day) you reach the pause line {reach}."


def status_block(wallet: dict[str, Any]) -> str:
    balance, threshold = cents(wallet.get("balanceCents")), cents(wallet.get("pauseThresholdCents"))
    if wallet.get("paused"):
        return (badge("Paused: routing offers you no calls", "bad")
                + f"<p>Your balance {money(balance)} is below your pause line {money(threshold)}. "
                f"Top up at least {money(threshold - balance)} and calls resume by themselves.</p>")
    return badge("Receiving calls", "good")


def charge_rows(charges: list[dict[str, Any]], base: str, who: words.Person = words.YOU) -> list[list[str]]:
    rows = []
    for c in charges:
        label, tone = words.refund_state(c.get("refund"))
        what = words.decision(c["decision"], who) if c.get("decision") else "AI booking fee."
        call_link = f'<a href="{base}/calls/{seg(c["callId"])}">{esc(c["callId"])}</a>'
        rows.append([esc(when(c.get("chargedAt", ""))), call_link, esc(c.get("zip") or "—"),
                     esc(money(c.get("amountCents"))), esc(what), badge(label, tone)])
    return rows


CHARGE_HEADERS = ["Charged", "Call", "ZIP", "Amount", "Why", "Refund"]
CALL_HEADERS = ["Started", "Call", "ZIP", "Decision", "Why", "Connected", "Charged"]


def call_rows(calls: list[dict[str, Any]], base: str, who: words.Person = words.YOU) -> list[list[str]]:
    """Calls that rang the contractor, billable or free, each linking to its evidence packet. Billing's
    explanation speaks to the contractor ("you paid"); anyone else reads the rule in words naming them."""
    rows = []
    for c in calls:
        decision = badge("Billable", "info") if c.get("billable") else badge("Free", "good")
        call_link = f'<a href="{base}/calls/{seg(c["callId"])}">{esc(c["callId"])}</a>'
        why = c.get("explanation", "") if who is words.YOU else words.rule(c.get("rule", ""), who)
        rows.append([esc(when(c.get("startedAt", ""))), call_link, esc(c.get("zip") or "—"), decision,
                     esc(why), esc(seconds(c.get("connectedMs"))),
                     esc(money(c.get("chargedCents")))])
    return rows


def install(site: WebApp, app: web.Application) -> None:
    async def overview(ctx: Ctx) -> web.StreamResponse:
        cid, api = _cid(ctx), ctx.api
        base = _base(cid)
        wallet = (await _optional(api.get(f"/v1/wallets/{seg(cid)}"), {})).get("wallet")
        if not wallet:
            return ctx.page("Overview", "<p>You have no wallet yet: your first top-up creates it.</p>",
                            current=f"{base}/")
        forecast = (await api.get(f"/v1/wallets/{seg(cid)}/spendForecast"))["forecast"]
        claims = (await api.get(f"/v1/contractors/{seg(cid)}/claims", pageSize=500))["claims"]
        profile = (await _optional(api.get(f"/v1/contractors/{seg(cid)}/routingProfile"), {})).get("profile") or {}
        mode = profile.get("mode", "CONTRACTOR_MODE_HUMAN")
        fee = 0
        if mode == "CONTRACTOR_MODE_AI_AGENT":
            fee = cents((await api.get("/v1/rateCard", pageSize=1)).get("bookingFee", {}).get("feeCents"))
        stats = (await api.get(f"/v1/contractors/{seg(cid)}/callStats", days=30))["days"]
        recent = (await api.get(f"/v1/contractors/{seg(cid)}/calls", pageSize=8)).get("calls", [])
        body = f"""<section class="cards" aria-label="Wallet">
<div class="card"><h2>Balance</h2><p class="figure" data-testid="balance">{money(wallet.get("balanceCents"))}</p></div>
<div class="card"><h2>Available</h2><p class="figure" data-testid="available">{money(wallet.get("availableCents"))}</p>
<p class="detail">Balance minus {money(wallet.get("reservedCents"))} held for calls ringing now.</p></div>
<div class="card"><h2>Status</h2><div data-testid="status">{status_block(wallet)}</div>
<p>{pause_line(wallet, claims, mode, fee)}</p></div>
</section>
<section aria-labelledby="runway-h"><h2 id="runway-h">Runway</h2>
<p data-testid="runway">{runway_words(forecast)}</p></section>
<section aria-labelledby="spend-h"><h2 id="spend-h">Calls and spend per day, last {len(stats)} days</h2>
{chart.calls_per_day(stats, forecast["days"])}</section>
<section aria-labelledby="recent-h"><h2 id="recent-h">Recent calls</h2>
{table("Recent calls, billable and free", CALL_HEADERS, call_rows(recent, base), empty="No calls yet.")}
<p><a class="button secondary" href="{base}/calls">All calls and charges</a></p></section>"""
        return ctx.page("Overview", body, current=f"{base}/")

    async def calls(ctx: Ctx) -> web.StreamResponse:
        """Every call that rang the contractor, free ones too, and their charges (bookings among them), each list
        paged on its own."""
        cid = _cid(ctx)
        base = _base(cid)
        query = ctx.request.query
        calls_token, charges_token = query.get("calls_token", ""), query.get("page_token", "")
        rang = await ctx.api.get(f"/v1/contractors/{seg(cid)}/calls", pageSize=PAGE_SIZE, pageToken=calls_token)
        charged = await ctx.api.get(f"/v1/contractors/{seg(cid)}/charges", pageSize=PAGE_SIZE,
                                    pageToken=charges_token)

        def older(label: str, calls_at: str, charges_at: str) -> str:
            tokens = {k: v for k, v in (("calls_token", calls_at), ("page_token", charges_at)) if v}
            href = f"{base}/calls?{urllib.parse.urlencode(tokens)}"
            return f'<p><a class="button secondary" href="{esc(href)}">{esc(label)}</a></p>'

        more_calls = (older("Older calls", rang["nextPageToken"], charges_token)
                      if rang.get("nextPageToken") else "")
        more_charges = (older("Older charges", calls_token, charged["nextPageToken"])
                        if charged.get("nextPageToken") else "")
        body = ('<p>Every call that rang you, billable or free, newest first. Open a call for its evidence and '
                'to ask for a refund.</p><section aria-labelledby="calls-h"><h2 id="calls-h">Calls</h2>'
                + table("Calls, billable and free", CALL_HEADERS, call_rows(rang.get("calls", []), base),
                        empty="No calls yet.") + more_calls
                + '</section><section aria-labelledby="charges-h"><h2 id="charges-h">Charges</h2>'
                f'<p>What you paid, calls and AI bookings, with each refund\'s state.</p>'
                f'<p><a class="button secondary" href="{base}/calls.csv" download>Download as CSV</a></p>'
                + table("Charges", CHARGE_HEADERS, charge_rows(charged["charges"], base), empty="No charges yet.")
                + more_charges + "</section>")
        return ctx.page("Calls & charges", body, current=f"{base}/calls")

    async def calls_csv(ctx: Ctx) -> web.StreamResponse:
        cid = _cid(ctx)
        charges = await csv_export.all_pages(ctx.api, f"/v1/contractors/{seg(cid)}/charges", "charges")
        return csv_export.response(f"callersync-{cid}-calls.csv", csv_export.charge_rows(charges))

    async def call(ctx: Ctx) -> web.StreamResponse:
        cid, call_id = _cid(ctx), ctx.request.match_info["call_id"]
        base = _base(cid)
        story = await ctx.api.get(f"/v1/contractors/{seg(cid)}/calls/{seg(call_id)}:explain")
        mine = [c for c in story.get("charges", []) if c.get("contractorId") == cid]
        media = await media_pages.section(site.gateway.media, story, media_pages.contractor_base(cid, call_id))
        body = evidence_packet(story, cid, media)
        for charge in mine:
            body += charge_section(charge, base, site.config.refund_window_days, ctx.session.csrf)
        page = ctx.page(f"Call {call_id}", f'<p><a href="{base}/calls">← All calls and charges</a></p>' + body,
                        current=f"{base}/calls")
        return media_pages.admit_media(page, site.gateway.media)

    async def request_refund(ctx: Ctx) -> web.StreamResponse:
        cid, call_id = _cid(ctx), ctx.request.match_info["call_id"]
        form = await ctx.request.post()
        reason = str(form.get("reason", ""))
        if reason not in words.REASON_LABELS:
            raise ApiError(400, "Choose the reason for the refund.")
        await ctx.api.send("POST", f"/v1/contractors/{seg(cid)}/charges/{seg(str(form.get('charge_id', '')))}"
                           ":requestRefund",
                           {"reason": reason, "note": str(form.get("note", ""))[:2000],
                            "idempotencyKey": str(form.get("key", ""))})
        raise web.HTTPSeeOther(f"{_base(cid)}/calls/{seg(call_id)}#refund")

    async def ledger(ctx: Ctx) -> web.StreamResponse:
        cid = _cid(ctx)
        base = _base(cid)
        token = ctx.request.query.get("page_token", "")
        reply = await _optional(ctx.api.get(f"/v1/wallets/{seg(cid)}/entries", pageSize=PAGE_SIZE, pageToken=token),
                                {"entries": []})
        rows = [[esc(when(e.get("createdAt", ""))), esc(csv_export.ENTRY_KINDS.get(e.get("kind", ""), "")),
                 esc(money(e.get("amountCents"))), esc(money(e.get("balanceAfterCents"))),
                 esc(e.get("description") or e.get("reference") or "")] for e in reply["entries"]]
        more = reply.get("nextPageToken", "")
        pager = (f'<p><a class="button secondary" href="{base}/ledger?page_token={esc(more)}">Older entries</a></p>'
                 if more else "")
        body = (f'<p>Every movement of your wallet, newest first: the balance is always their sum.'
                f'</p><p><a class="button secondary" href="{base}/ledger.csv" download>Download as CSV</a></p>'
                + table("Ledger", ["When", "What", "Amount", "Balance after", "Reference"], rows,
                        empty="No entries yet.") + pager)
        return ctx.page("Ledger", body, current=f"{base}/ledger")

    async def ledger_csv(ctx: Ctx) -> web.StreamResponse:
        cid = _cid(ctx)
        entries = await csv_export.all_pages(ctx.api, f"/v1/wallets/{seg(cid)}/entries", "entries")
        return csv_export.response(f"callersync-{cid}-ledger.csv", csv_export.entry_rows(entries))

    def add(path: str, name: str, handler: Any, method: str = "GET") -> None:
        app.router.add_route(method, "/app/c/{contractor_id}" + path, site.guarded(name, handler))

    add("/", "contractor.overview", overview)
    add("/calls", "contractor.calls", calls)
    add("/calls.csv", "contractor.calls_csv", calls_csv)
    add("/calls/{call_id}", "contractor.call", call)
    add("/calls/{call_id}/refund", "contractor.request_refund", request_refund, "POST")
    add("/ledger", "contractor.ledger", ledger)
    add("/ledger.csv", "contractor.ledger_csv", ledger_csv)
    from services.gateway.web import money_pages, zips_pages

    zips_pages.install(site, add)
    money_pages.install(site, add)


def _plus(stamp: str, seconds_after: float) -> str:
    return (moment(stamp) + dt.timedelta(seconds=seconds_after)).isoformat()


def evidence_packet(story: dict[str, Any], cid: str, media: str, *, operator: bool = False) -> str:
    """The same facts for contractor `cid` and for an operator: each leg's times, the 30-second mark, who hung up,
    ZIP and rate, recording, transcript (`media`: media_pages.section), the decision and billing's own account of
    it. Only the names differ: the contractor reads "you", an operator reads contractor ids."""
    call = story.get("call") or {}
    decision = story.get("decision") or {}
    legs = []
    for index, leg in enumerate(call.get("legs", [])):
        answered = leg.get("answeredAt", "")
        outcome: dict[str, Any] = next(
            (o for o in decision.get("legs", []) if int(o.get("legIndex") or 0) == index), {})
        who = words.about(leg.get("contractorId", ""), cid, operator=operator)
        legs.append([
            esc(index + 1), esc(who.you if operator else who.you.capitalize()),
            esc(when(leg.get("rangAt", ""))),
            esc(when(answered) + (f" by {words.answered_by(leg.get('answeredBy', ''), who)}" if answered else "")),
            esc(when(_plus(answered, 30)) if answered else "—"), esc(when(leg.get("endedAt", ""))),
            esc(seconds(outcome.get("connectedMs"))), esc(words.hangup(leg.get("hangupSide", ""), who)),
            esc(words.rule(outcome.get("rule", ""), who)),
        ])
    reader = words.named(cid) if operator else words.YOU
    tone = "good" if not decision.get("billable") else "info"
    verdict = ("Billable" if decision.get("billable") else "Free") if decision else "Not rated"
    return f"""<section aria-labelledby="decision-h"><h2 id="decision-h">Decision</h2>
<p>{badge(verdict, tone)}</p><p data-testid="decision">{esc(words.decision(decision, reader) if decision else "")}</p>
<p class="detail">{esc(story.get("explanation", ""))}</p></section>
<section aria-labelledby="evidence-h"><h2 id="evidence-h">Evidence</h2>
<dl class="facts"><dt>ZIP</dt><dd>{esc(call.get("zip", "—"))}</dd>
<dt>Rate</dt><dd>{money(decision.get("rateCents"))}
 (in effect from {esc(when(decision.get("rateEffectiveFrom", "")))})</dd>
<dt>Caller</dt><dd>{esc(call.get("callerNumber", "—"))}</dd>
<dt>Started</dt><dd>{esc(when(call.get("startedAt", "")))}</dd></dl>
{table("Legs of the call", ["Leg", "Who", "Rang", "Answered", "30-second mark", "Ended", "Connected",
                             "Who hung up", "Outcome"], legs, empty="Nobody was rung.")}
<h3>Recording and transcript</h3>{media}</section>"""


def charge_section(charge: dict[str, Any], base: str, window_days: int, csrf: str) -> str:
    case = charge.get("refund")
    label, tone = words.refund_state(case)
    charged = moment(charge["chargedAt"])
    days_left = window_days - (dt.datetime.now(dt.UTC) - charged).days
    refundable = cents(charge.get("amountCents")) - cents(charge.get("refundedCents"))
    state = f"""<p data-testid="refund-state">{badge(label, tone)}</p>"""
    if case:
        state += (f"<p>Asked {esc(when(case.get('requestedAt', '')))} for {money(case.get('amountCents'))}: "
                  f"{esc(words.REASON_LABELS.get(case.get('reason', ''), ''))}.</p>")
        if case.get("resolutionNote"):
            state += f'<p>Answer: {esc(case["resolutionNote"])}</p>'
    can_ask = refundable > 0 and days_left > 0 and not (case and case.get("state") == "REFUND_STATE_PENDING_REVIEW")
    window = (f"{days_left} day{'s' if days_left != 1 else ''} left to ask for a refund (the window is "
              f"{window_days} days from the charge)." if days_left > 0 else "The refund window has closed.")
    form = ""
    if can_ask:
        options = "".join(
            f'<div class="choice"><input type="radio" name="reason" id="r-{code}" value="{code}" required>'
            f'<label for="r-{code}">{esc(text)}<span class="policy">{esc(policy)}</span></label></div>'
            for code, text, policy in words.REFUND_REASONS)
        form = f"""<form method="post" action="{base}/calls/{seg(charge['callId'])}/refund" class="stack">
{csrf_field(csrf)}<input type="hidden" name="charge_id" value="{esc(charge['chargeId'])}">
<input type="hidden" name="key" value="{secrets.token_urlsafe(16)}">
<fieldset><legend>Why should this charge be refunded?</legend>{options}</fieldset>
<label for="note">What happened (the reviewer reads this)</label>
<textarea id="note" name="note" rows="3" maxlength="2000"></textarea>
<button type="submit">Request a refund of {money(refundable)}</button></form>"""
    return f"""<section id="refund" aria-labelledby="charge-h"><h2 id="charge-h">Charge and refund</h2>
<p>Charged {money(charge.get("amountCents"))} on {esc(when(charge["chargedAt"]))}; refunded so far
{money(charge.get("refundedCents"))}.</p>{state}<p>{esc(window)}</p>{form}</section>"""
