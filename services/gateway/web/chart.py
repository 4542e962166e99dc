"""Spend per day as hand-drawn SVG bars, with the same figures as a table for screen readers and keyboards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.gateway.web.render import cents, esc, money, table

WIDTH, HEIGHT, GAP = 600, 160, 2


def spend_bars(days: list[dict[str, Any]]) -> str:
    if not days:
        return '<p class="empty">No days to show.</p>'
    top = max([cents(d.get("spentCents")) for d in days] + [1])
    step = WIDTH / len(days)
    bars = []
    for i, d in enumerate(days):
        spent = cents(d.get("spentCents"))
        height = round(HEIGHT * spent / top) if spent else 0
        label = f"{d['date']}: {money(spent)} in {int(d.get('debitCount') or 0)} billable calls or bookings"
        bars.append(f'<rect x="{i * step + GAP / 2:.1f}" y="{HEIGHT - height}" width="{step - GAP:.1f}" '
                    f'height="{max(height, 1)}" class="{"bar" if spent else "bar-empty"}"><title>{esc(label)}</title>'
                    "</rect>")
    total = sum(cents(d.get("spentCents")) for d in days)
    billed = sum(int(d.get("debitCount") or 0) for d in days)
    first = dt.date.fromisoformat(days[0]["date"]).strftime("%b %d")
    last = dt.date.fromisoformat(days[-1]["date"]).strftime("%b %d")
    summary = (f"{money(total)} spent on {billed} billable calls and bookings from {first} to {last}; "
               f"the highest day was {money(top if total else 0)}.")
    rows = [[esc(d["date"]), esc(money(d.get("spentCents"))), esc(int(d.get("debitCount") or 0)),
             esc(money(d.get("refundedCents"))), esc(money(d.get("toppedUpCents")))]
            for d in reversed(days) if any(cents(d.get(k)) for k in ("spentCents", "refundedCents", "toppedUpCents"))]
    return f"""<figure class="chart">
<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-summary" preserveAspectRatio="none">
<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>{"".join(bars)}</svg>
<figcaption id="chart-summary">{esc(summary)} Free calls cost nothing and are not drawn.</figcaption>
</figure>
<details><summary>Spend per day as a table</summary>
{table("Spend per day", ["Day", "Spent", "Billable calls and bookings", "Refunded", "Topped up"], rows,
       empty="No activity in these days.")}</details>"""
