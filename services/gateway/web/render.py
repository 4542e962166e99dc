"""HTML by hand: escaped f-strings and one layout. Everything inserted goes through esc()."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from services.gateway.tokens import Principal
from services.runtime.money import MINUS_SIGN, dollars

# No inline script or style anywhere, so the policy can forbid both; Referrer-Policy keeps a sign-in token in
# a URL from leaking to another site (same-origin, not no-referrer: with no-referrer a browser sends
# `Origin: null` on form posts, and the CSRF check reads Origin). A page with a player adds where its media
# redirects land to media-src (media_pages.admit_media); no other page needs any media source.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cents(value: Any) -> int:
    """proto3 JSON prints int64 as a string."""
    return int(value or 0)


def money(value: Any) -> str:
    return dollars(cents(value), minus=MINUS_SIGN)


def moment(stamp: str) -> dt.datetime:
    """The API's RFC 3339 timestamp (proto3 JSON: "...Z") as an aware datetime."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def stamp(at: dt.datetime) -> str:
    """An aware datetime as the API writes timestamps: RFC 3339 in UTC, "...Z"."""
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def when(stamp: str) -> str:
    """An RFC 3339 timestamp as UTC to the second, or a dash."""
    if not stamp:
        return "—"
    return moment(stamp).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(ms: Any) -> str:
    return f"{int(ms or 0) / 1000:.1f} s"


def badge(text: str, tone: str) -> str:
    """State in words and a mark, never by colour alone: the tone only colours what the text already says."""
    marks = {"good": "✓", "bad": "✕", "wait": "…", "info": "•"}
    return f'<span class="badge badge-{esc(tone)}"><span aria-hidden="true">{marks.get(tone, "•")}</span> ' \
           f"{esc(text)}</span>"


def table(caption: str, headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str = "Nothing yet.") -> str:
    """Cells are HTML already escaped by the caller. On a phone each row becomes a card, every cell labelled
    with its column's name (data-label, shown by the stylesheet)."""
    headers = list(headers)
    body = "".join(
        "<tr>" + "".join(f'<td data-label="{esc(h)}">{cell}</td>' for h, cell in zip(headers, row, strict=False))
        + "</tr>" for row in rows)
    if not body:
        return f"<p class=\"empty\">{esc(empty)}</p>"
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    return (f'<div class="scroll" role="region" aria-label="{esc(caption)}" tabindex="0"><table>'
            f"<caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(token)}">'


def nav_links(principal: Principal | None) -> list[tuple[str, str]]:
    if principal is None:
        return []
    if principal.is_operator:
        return [("/app/ops/", "Refund queue"), ("/app/ops/contractors", "Contractors"),
                ("/app/ops/rates", "Rate card"), ("/app/ops/blocked", "Blocked callers")]
    base = f"/app/c/{esc(principal.contractor_id)}"
    return [(f"{base}/", "Overview"), (f"{base}/calls", "Calls & charges"), (f"{base}/ledger", "Ledger"),
            (f"{base}/zips", "ZIPs"), (f"{base}/money", "Money")]


def page(title: str, body: str, *, principal: Principal | None = None, csrf: str = "", status: int = 200,
         current: str = "") -> web.Response:
    here = ' aria-current="page"'
    links = "".join(
        f'<li><a href="{href}"{here if href == current else ""}>{esc(label)}</a></li>'
        for href, label in nav_links(principal)
    )
    signout = ""
    if principal is not None:
        who = principal.subject + (f" · {principal.contractor_id}" if principal.contractor_id else " · operator")
        signout = (f'<form method="post" action="/app/signout" class="signout">{csrf_field(csrf)}'
                   f'<span class="who">{esc(who)}</span> <button type="submit">Sign out</button></form>')
    nav = f'<nav aria-label="Main"><ul>{links}</ul></nav>' if links else ""
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · CallerSync</title>
<link rel="stylesheet" href="/app/static/app.css">
<script src="/app/static/app.js" defer></script>
</head><body>
<a class="skip" href="#main">Skip to content</a>
<header><div class="brand">CallerSync</div>{signout}</header>
{nav}
<main id="main" tabindex="-1"><h1>{esc(title)}</h1>
{body}
</main></body></html>"""
    return web.Response(text=document, content_type="text/html", status=status, headers=SECURITY_HEADERS)
