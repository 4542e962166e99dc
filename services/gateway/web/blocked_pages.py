"""The operator's blocklist: callers routing never rings a contractor for, blocked by hand or by an approved spam
refund, and unblocked by hand (who unblocked is the session's operator)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from services.gateway.web.api import ApiError, seg
from services.gateway.web.render import csrf_field, esc, table, when

if TYPE_CHECKING:
    from services.gateway.web.site import Ctx


def unblock_form(caller: str, csrf: str) -> str:
    return (f'<form method="post" action="/app/ops/blocked/unblock" class="inline">{csrf_field(csrf)}'
            f'<input type="hidden" name="caller" value="{esc(caller)}">'
            f'<button type="submit" class="button secondary" aria-label="Unblock {esc(caller)}">Unblock</button>'
            "</form>")


def install(add: Callable[..., None]) -> None:
    async def blocked(ctx: Ctx) -> web.StreamResponse:
        reply = await ctx.api.get("/v1/blockedCallers", pageSize=200)
        rows = [[esc(b.get("callerNumber", "")), esc(b.get("source", "").removeprefix("BLOCK_SOURCE_").title()),
                 esc(b.get("blockedBy", "")), esc(b.get("note", "")), esc(when(b.get("blockedAt", ""))),
                 unblock_form(b.get("callerNumber", ""), ctx.session.csrf)]
                for b in reply.get("blockedCallers", [])]
        body = (table("Blocked callers", ["Caller", "Source", "By", "Note", "When", ""], rows,
                      empty="Nobody is blocked.")
                + f"""<h2>Block a caller</h2><form method="post" action="/app/ops/blocked" class="stack">
{csrf_field(ctx.session.csrf)}<label for="caller">Caller number (E.164, e.g. +14155550123)</label>
<input id="caller" name="caller" type="tel" required><label for="bnote">Why</label>
<input id="bnote" name="note" required><button type="submit">Block caller</button></form>""")
        return ctx.page("Blocked callers", body, current="/app/ops/blocked")

    async def block(ctx: Ctx) -> web.StreamResponse:
        form = await ctx.request.post()
        await ctx.api.send("POST", "/v1/blockedCallers", {
            "callerNumber": str(form.get("caller", "")), "blockedBy": ctx.principal.subject,
            "note": str(form.get("note", ""))})
        raise web.HTTPSeeOther("/app/ops/blocked")

    async def unblock(ctx: Ctx) -> web.StreamResponse:
        form = await ctx.request.post()
        caller = str(form.get("caller", ""))
        if not caller:
            raise ApiError(400, "Choose the caller to unblock.")
        await ctx.api.delete(f"/v1/blockedCallers/{seg(caller)}", unblockedBy=ctx.principal.subject,
                             note="unblocked in the operator console")
        raise web.HTTPSeeOther("/app/ops/blocked")

    add("/blocked", "operator.blocked", blocked)
    add("/blocked", "operator.block", block, "POST")
    add("/blocked/unblock", "operator.unblock", unblock, "POST")
