"""The contractor's ZIPs: claims, mode, schedule, caps, missed calls and the pause simulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from services.gateway.web.api import ApiError, seg
from services.gateway.web.render import cents, esc, money, table, when

if TYPE_CHECKING:
    from services.gateway.web.site import Ctx, WebApp

MODES = {"CONTRACTOR_MODE_HUMAN": "You answer (billed per call connected 30 s or more)",
         "CONTRACTOR_MODE_AI_AGENT": "AI agent answers (billed per booked appointment)"}


WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def schedule_rows(schedule: dict[str, Any]) -> list[list[str]]:
    """Each day of the week and the hours routing may ring the contractor then, in their time zone."""
    by_day: dict[str, list[tuple[int, int]]] = {day: [] for day in WEEKDAYS}
    for window in schedule.get("weeklyHours", []):
        day = str(window.get("day", "")).removeprefix("WEEKDAY_")
        if day in by_day:
            by_day[day].append((int(window.get("startMinute") or 0), int(window.get("endMinute") or 0)))
    return [[esc(day.title()), esc(", ".join(f"{_clock(a)}–{_clock(b)}" for a, b in sorted(windows))
                                   if windows else "Not rung")] for day, windows in by_day.items()]


def schedule_html(schedule: dict[str, Any]) -> str:
    if not schedule.get("weeklyHours"):
        return "<p>Any hour of any day.</p>"
    zone = schedule.get("timeZone") or "UTC"
    return (f"<p>Times in {esc(zone)}.</p>"
            + table(f"Weekly hours ({zone})", ["Day", "Hours"], schedule_rows(schedule)))


def pause_simulator(claims: list[dict[str, Any]], floor_cents: int) -> list[list[str]]:
    """For each claim: the pause line if it were released (the dearest of the rest, or the AI fee floor)."""
    rows = []
    line = max([cents(c.get("rateCents")) for c in claims] + [floor_cents])
    for claim in claims:
        rest = [cents(c.get("rateCents")) for c in claims if c is not claim]
        after = max(rest + [floor_cents]) if rest else 0
        words = (f"Release ZIP {claim['zip']} and your pause line falls from {money(line)} to {money(after)}."
                 if after < line else f"Release ZIP {claim['zip']} and your pause line stays at {money(line)}.")
        rows.append([esc(claim["zip"]), esc(words)])
    return rows


def booking_costs(charges: list[dict[str, Any]]) -> list[list[str]]:
    """Per ZIP: AI bookings, what they cost net of refunds, and that per booking."""
    by_zip: dict[str, list[int]] = {}
    for charge in charges:
        if charge.get("kind") != "CHARGE_KIND_BOOKING":
            continue
        spent = by_zip.setdefault(charge.get("zip") or "unknown", [0, 0])
        spent[0] += 1
        spent[1] += cents(charge.get("amountCents")) - cents(charge.get("refundedCents"))
    return [[esc(zip_code), esc(count), esc(money(total)), esc(money(total // count))]
            for zip_code, (count, total) in sorted(by_zip.items())]


def install(site: WebApp, add: Callable[..., None]) -> None:
    async def zips(ctx: Ctx) -> web.StreamResponse:
        cid = ctx.request.match_info["contractor_id"]
        api = ctx.api
        claims = (await api.get(f"/v1/contractors/{seg(cid)}/claims", pageSize=500))["claims"]
        try:
            profile = (await api.get(f"/v1/contractors/{seg(cid)}/routingProfile"))["profile"]
        except ApiError as err:
            if err.status != 404:
                raise
            profile = {}
        mode = profile.get("mode", "CONTRACTOR_MODE_HUMAN")
        fee = cents((await api.get("/v1/rateCard", pageSize=1)).get("bookingFee", {}).get("feeCents")) \
            if mode == "CONTRACTOR_MODE_AI_AGENT" else 0
        missed = (await api.get(f"/v1/contractors/{seg(cid)}/missedCalls", pageSize=20)).get("missedCalls", [])
        ai_section = ""
        if mode == "CONTRACTOR_MODE_AI_AGENT":
            charges = (await api.get(f"/v1/contractors/{seg(cid)}/charges", pageSize=500))["charges"]
            ai_section = ("<section aria-labelledby=\"ai-h\"><h2 id=\"ai-h\">AI agent: cost per booked appointment</h2>"
                          "<p>Your latest 500 charges, by ZIP: what your AI agent's bookings cost you.</p>"
                          + table("Cost per booking by ZIP", ["ZIP", "Bookings", "Spent", "Cost per booking"],
                                  booking_costs(charges), empty="No bookings yet.") + "</section>")
        claim_rows = [[esc(c["zip"]), esc("Primary" if c.get("position") == "CLAIM_POSITION_PRIMARY"
                                          else f"Backup #{int(c.get('backupRank') or 0)}"),
                       esc(money(c.get("rateCents"))), esc(when(c.get("claimedAt", "")))] for c in claims]
        caps = profile.get("caps", {})
        caps_words = ", ".join(f"{label}: {int(caps.get(key) or 0) or 'no limit'}" for key, label in (
            ("dailyMaxConnectedCalls", "per day"), ("monthlyMaxConnectedCalls", "per month"),
            ("maxConcurrentCalls", "at once"))) if caps else "no limits set"
        missed_rows = [[esc(when(m.get("missedAt", ""))), esc(m.get("zip", "")), esc(m.get("message", "")),
                        esc(money(m.get("rateCents")))] for m in missed]
        body = f"""<section aria-labelledby="claims-h"><h2 id="claims-h">Claimed ZIPs</h2>
{table("Claimed ZIPs", ["ZIP", "Position", "Rate per billable call", "Claimed"], claim_rows, empty="No claims.")}
</section>
<section aria-labelledby="mode-h"><h2 id="mode-h">How you take calls</h2>
<dl class="facts"><dt>Mode</dt><dd>{esc(MODES.get(mode, mode))}</dd>
<dt>Caps</dt><dd>{esc(caps_words)}</dd>
<dt>Connected today / this month</dt><dd>{int(profile.get("connectedCallsToday") or 0)} /
{int(profile.get("connectedCallsThisMonth") or 0)}</dd></dl>
<h3>When you are rung</h3>{schedule_html(profile.get("schedule", {}))}</section>
<section aria-labelledby="sim-h"><h2 id="sim-h">Pause simulator</h2>
<p>Your pause line is the rate of your most expensive ZIP{" (or the AI booking fee, if higher)" if fee else ""}:
below it, routing stops offering you calls.</p>
{table("If you released a ZIP", ["ZIP", "What would change"], pause_simulator(claims, fee), empty="No claims.")}
</section>
{ai_section}
<section aria-labelledby="missed-h"><h2 id="missed-h">Missed calls</h2>
{table("Missed calls", ["When", "ZIP", "Why", "Rate"], missed_rows, empty="No missed calls.")}</section>"""
        return ctx.page("ZIPs", body, current=f"/app/c/{seg(cid)}/zips")

    add("/zips", "contractor.zips", zips)
