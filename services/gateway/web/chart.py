"""Spend per day as hand-drawn SVG bars, with the same figures as a table for screen readers and keyboards.

calls_per_day draws each day's calls stacked, billable (solid) under free (hatched): the two are told apart by
pattern and by the legend's words as well as by colour, and the table below carries every figure."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.gateway.web.render import cents, esc, money, table

WIDTH, HEIGHT, GAP = 600, 160, 2


def _rect(x: float, y: float, width: float, height: float, cls: str, label: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" class="{cls}">'
            f"<title>{esc(label)}</title></rect>")


def calls_per_day(calls: list[dict[str, Any]], money_days: list[dict[str, Any]]) -> str:
    """Billable vs free calls per day (billing's GetContractorCallStats), with the wallet's spend, refunds and
    top-ups of the same days (GetSpendForecast) in the caption and the table."""
    if not calls:
        return '<p class="empty">No days to show.</p>'
    wallet = {d["date"]: d for d in money_days}
    billable = [int(d.get("billableCalls") or 0) for d in calls]
    free = [int(d.get("freeCalls") or 0) for d in calls]
    top = max([b + f for b, f in zip(billable, free, strict=True)] + [1])
    step = WIDTH / len(calls)
    shapes = []
    for i, d in enumerate(calls):
        x, width = i * step + GAP / 2, step - GAP
        b_height, f_height = HEIGHT * billable[i] / top, HEIGHT * free[i] / top
        if billable[i]:
            shapes.append(_rect(x, HEIGHT - b_height, width, b_height, "bar bar-billable",
                                f"{d['date']}: {billable[i]} billable calls, {money(d.get('billableCents'))}"))
        if free[i]:
            shapes.append(_rect(x, HEIGHT - b_height - f_height, width, f_height, "bar bar-free",
                                f"{d['date']}: {free[i]} free calls"))
    spent = sum(cents(wallet.get(d["date"], {}).get("spentCents")) for d in calls)
    first = dt.date.fromisoformat(calls[0]["date"]).strftime("%b %d")
    last = dt.date.fromisoformat(calls[-1]["date"]).strftime("%b %d")
    summary = (f"From {first} to {last}: {sum(billable)} billable calls costing "
               f"{money(sum(cents(d.get('billableCents')) for d in calls))} and {sum(free)} free calls; "
               f"{money(spent)} spent in all (calls and bookings).")
    rows = []
    for i, d in reversed(list(enumerate(calls))):
        w = wallet.get(d["date"], {})
        figures = (billable[i], free[i], *(cents(w.get(k)) for k in ("spentCents", "refundedCents", "toppedUpCents")))
        if any(figures):
            rows.append([esc(d["date"]), esc(billable[i]), esc(free[i]), esc(money(w.get("spentCents"))),
                         esc(money(w.get("refundedCents"))), esc(money(w.get("toppedUpCents")))])
    legend = ('<ul class="legend" data-testid="chart-legend">'
              '<li><svg aria-hidden="true" width="18" height="18"><rect class="bar-billable" width="18" height="18"/>'
              "</svg> Billable calls (solid)</li>"
              '<li><svg aria-hidden="true" width="18" height="18"><rect class="bar-free" width="18" height="18"/>'
              "</svg> Free calls (hatched)</li></ul>")
    return f"""<figure class="chart" data-testid="calls-chart">
<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-summary" preserveAspectRatio="none">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="6" height="6" class="hatch-ground"/><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>
<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>{"".join(shapes)}</svg>
<figcaption id="chart-summary">{esc(summary)}</figcaption>
{legend}
</figure>
<details><summary>Calls and spend per day as a table</summary>
{table("Calls and spend per day", ["Day", "Billable calls", "Free calls", "Spent", "Refunded", "Topped up"], rows,
       empty="No activity in these days.")}</details>"""
