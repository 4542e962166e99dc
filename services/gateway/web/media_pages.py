"""A call's recording and transcript on the pages: the player and the transcript's text in the evidence packet,
and the session-authenticated paths the player loads (the API's own media routes want a bearer token, which a
browser's <audio> cannot send)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from services.gateway.media import http as media_http
from services.gateway.media.resolver import MediaResolver
from services.gateway.web.api import seg
from services.gateway.web.render import esc

if TYPE_CHECKING:
    from services.gateway.web.site import Ctx, WebApp


def contractor_base(contractor_id: str, call_id: str) -> str:
    return f"/app/c/{seg(contractor_id)}/calls/{seg(call_id)}"


def operator_base(call_id: str) -> str:
    return f"/app/ops/calls/{seg(call_id)}"


async def section(resolver: MediaResolver, story: dict[str, Any], media_base: str) -> str:
    """The player (its source is the gateway, which redirects to the store or serves the development file) and
    the transcript's text, read by the gateway for the page."""
    recording = (story.get("call") or {}).get("recording") or {}
    if media_http.uri_of(story, "recording"):
        disclosure = "played" if recording.get("disclosurePlayed") else "NOT played"
        player = (f'<audio controls preload="metadata" src="{media_base}/recording" data-testid="recording">'
                  f'</audio><p>Recording disclosure to the caller: {disclosure}.</p>'
                  f'<p><a class="button secondary" href="{media_base}/recording" download>Download the recording</a>'
                  "</p>")
    else:
        player = "<p>No recording.</p>"
    if not media_http.uri_of(story, "transcript"):
        return player + "<p>No transcript.</p>"
    text, problem = await media_http.transcript_text(resolver, story)
    shown = (f'<p role="status">The transcript is stored but cannot be shown here: {esc(problem)}.</p>' if problem
             else f'<pre data-testid="transcript-text">{esc(text) or "(empty)"}</pre>')
    return (player + "<h4>Transcript</h4>" + shown
            + f'<p><a class="button secondary" href="{media_base}/transcript" data-testid="transcript">'
            "Open the transcript on its own</a></p>")


def admit_media(response: web.StreamResponse, resolver: MediaResolver) -> web.StreamResponse:
    """Adds where the gateway's media redirects land (the S3 store, the allowlisted hosts) to the page's
    media-src: the player follows the redirect there, and the policy checks where it lands."""
    policy = response.headers["Content-Security-Policy"]
    sources = " ".join(resolver.config.media_sources())
    response.headers["Content-Security-Policy"] = policy.replace("media-src 'self'", f"media-src 'self' {sources}")
    return response


def install(site: WebApp, app: web.Application) -> None:
    async def contractor_media(ctx: Ctx) -> web.StreamResponse:
        cid, call_id = ctx.request.match_info["contractor_id"], ctx.request.match_info["call_id"]
        story = await ctx.api.get(f"/v1/contractors/{seg(cid)}/calls/{seg(call_id)}:explain")
        return _respond(site, story, ctx, call_id)

    async def operator_media(ctx: Ctx) -> web.StreamResponse:
        call_id = ctx.request.match_info["call_id"]
        story = await ctx.api.get(f"/v1/calls/{seg(call_id)}:explain")
        return _respond(site, story, ctx, call_id)

    app.router.add_get("/app/c/{contractor_id}/calls/{call_id}/" + media_http.PATH_KIND,
                       site.guarded("contractor.call_media", contractor_media))
    app.router.add_get("/app/ops/calls/{call_id}/" + media_http.PATH_KIND,
                       site.guarded("operator.call_media", operator_media, operator=True))


def _respond(site: WebApp, story: dict[str, Any], ctx: Ctx, call_id: str) -> web.StreamResponse:
    request_id = uuid.uuid4().hex
    response = media_http.respond(site.gateway.media, story, ctx.request.match_info["kind"], call_id, request_id)
    response.headers["X-Request-Id"] = request_id
    return response
