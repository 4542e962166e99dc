"""The rate card editor's "who would pause": each claimant's pause line at the moment a new rate would take
effect, by routing's own rule (services/runtime/pause_line.py), against their balance now."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.gateway.web.api import Api, ApiError, seg
from services.gateway.web.render import badge, cents, esc, money, stamp, table, when
from services.runtime.pause_line import pause_threshold_cents

AI_MODE = "CONTRACTOR_MODE_AI_AGENT"


class RatesAt:
    """ZIP rates and the booking fee in effect at one moment, each asked of the API once."""

    def __init__(self, api: Api, moment: dt.datetime) -> None:
        self._api = api
        self._as_of = stamp(moment)
        self._rates: dict[str, int | None] = {}

    async def rate(self, zip_code: str) -> int | None:
        if zip_code not in self._rates:
            try:
                reply = await self._api.get(f"/v1/zips/{seg(zip_code)}/rate", asOf=self._as_of)
                rates = reply.get("rates", [])
                self._rates[zip_code] = cents(rates[0].get("rateCents")) if rates else None
            except ApiError as err:
                if err.status != 404:
                    raise
                self._rates[zip_code] = None
        return self._rates[zip_code]

    async def booking_fee(self) -> int:
        reply = await self._api.get("/v1/rateCard", asOf=self._as_of, pageSize=1)
        return cents(reply.get("bookingFee", {}).get("feeCents"))


async def _optional(call: Any, default: Any) -> Any:
    try:
        return await call
    except ApiError as err:
        if err.status != 404:
            raise
        return default


async def preview(api: Api, zip_code: str, rate_cents: int, effective_from: dt.datetime,
                  now: dt.datetime) -> str:
    moment = max(effective_from, now)
    future = effective_from > now
    at = RatesAt(api, moment)
    fee = await at.booking_fee()
    claims = (await api.get(f"/v1/zips/{seg(zip_code)}/claims", pageSize=500))["claims"]
    rows = []
    for claim in claims:
        cid = claim["contractorId"]
        theirs = (await api.get(f"/v1/contractors/{seg(cid)}/claims", pageSize=500))["claims"]
        others = [await at.rate(c["zip"]) for c in theirs if c["zip"] != zip_code]
        rates = [rate_cents] + [r for r in others if r is not None]
        profile = (await _optional(api.get(f"/v1/contractors/{seg(cid)}/routingProfile"), {})).get("profile") or {}
        ai_mode = profile.get("mode") == AI_MODE
        line = pause_threshold_cents(rates, ai_mode, fee)
        line_words = money(line) + (" (the AI booking fee)" if ai_mode and fee >= max(rates) else "")
        wallet = (await _optional(api.get(f"/v1/wallets/{seg(cid)}"), {})).get("wallet") or {}
        balance = cents(wallet.get("balanceCents"))
        if wallet.get("paused"):
            verdict = badge("Paused already", "info")
        elif balance < line:
            start = f" from {when(stamp(moment))}" if future else ""
            verdict = badge(f"Would pause{start} ({money(balance)} below {money(line)})", "bad")
        else:
            verdict = badge("Keeps receiving calls", "good")
        rows.append([f'<a href="/app/ops/contractors?id={seg(cid)}">{esc(cid)}</a>', esc(money(balance)),
                     esc(money(wallet.get("pauseThresholdCents"))), esc(line_words), verdict])
    scheduled = (f'<p data-testid="preview-when">A scheduled change: the rate in effect now stays until '
                 f"{esc(when(stamp(moment)))}. Pause lines below are at that moment, against balances now.</p>"
                 if future else "")
    return (f"<h2>If ZIP {esc(zip_code)} cost {money(rate_cents)} from {esc(when(stamp(moment)))}</h2>{scheduled}"
            + table("Who would pause", ["Contractor", "Balance", "Pause line now", "Pause line then", "Outcome"],
                    rows, empty="Nobody claims this ZIP."))
