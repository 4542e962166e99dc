"""Calls (charges) and ledger as CSV: every page of the API's listing, oldest pages last."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from services.gateway.web import words
from services.gateway.web.api import Api
from services.gateway.web.render import cents
from services.runtime.money import decimal_dollars

MAX_ROWS = 20_000  # a spreadsheet's worth; the API pages beyond it still answer
# A direct charge is a booking fee or a call rated without a hold; its description says which.
ENTRY_KINDS = {"ENTRY_KIND_TOP_UP": "Top-up", "ENTRY_KIND_CAPTURE": "Call charge",
               "ENTRY_KIND_CHARGE": "Charge", "ENTRY_KIND_REFUND": "Refund"}


async def all_pages(api: Api, path: str, field: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    token = ""
    while len(rows) < MAX_ROWS:
        reply = await api.get(path, pageSize=500, pageToken=token)
        rows += reply.get(field, [])
        token = reply.get("nextPageToken", "")
        if not token:
            break
    return rows


def _cell(value: Any) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not text.lstrip("-").replace(".", "").isdigit() else text


def response(filename: str, rows: Iterable[list[Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return web.Response(text=out.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "Cache-Control": "no-store"})


def charge_rows(charges: list[dict[str, Any]]) -> Iterable[list[Any]]:
    yield ["charged_at", "charge_id", "call_id", "kind", "zip", "amount_usd", "decision", "connected_s",
           "refunded_usd", "refund_state"]
    for c in charges:
        d = c.get("decision") or {}
        yield [c.get("chargedAt", ""), c.get("chargeId", ""), c.get("callId", ""),
               c.get("kind", "").removeprefix("CHARGE_KIND_").lower(), c.get("zip", ""),
               decimal_dollars(cents(c.get("amountCents"))),
               words.rule(d.get("rule", ""), default="booking fee"), f"{int(d.get('connectedMs') or 0) / 1000:.3f}",
               decimal_dollars(cents(c.get("refundedCents"))), words.refund_state(c.get("refund"))[0]]


def entry_rows(entries: list[dict[str, Any]]) -> Iterable[list[Any]]:
    yield ["created_at", "entry_id", "kind", "amount_usd", "balance_after_usd", "reference", "description"]
    for e in entries:
        yield [e.get("createdAt", ""), e.get("entryId", ""), ENTRY_KINDS.get(e.get("kind", ""), ""),
               decimal_dollars(cents(e.get("amountCents"))), decimal_dollars(cents(e.get("balanceAfterCents"))),
               e.get("reference", ""), e.get("description", "")]
