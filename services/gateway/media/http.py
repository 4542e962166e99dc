"""The answer to GET .../calls/{call_id}/recording and .../transcript, once ExplainCall (with the caller's own
scope) has said where the call's media is: a redirect to a URL a browser can open, or the development file."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
from aiohttp import web

from services.gateway import transcoding
from services.gateway.media.resolver import LocalFile, MediaResolver, Unopenable

log = logging.getLogger("callersync.gateway.media")

KINDS = ("recording", "transcript")
PATH_KIND = "{kind:recording|transcript}"
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".txt": "text/plain"}


def uri_of(story: dict[str, Any], kind: str) -> str:
    """The stored URI of one of the call's media in ExplainCall's JSON answer; "" when there is none."""
    call = story.get("call") or {}
    if kind == "recording":
        return str((call.get("recording") or {}).get("uri") or "")
    return str(call.get("transcriptUri") or "")


def answer(resolver: MediaResolver, story: dict[str, Any], kind: str, call_id: str) -> web.StreamResponse:
    """Raises NotFound (no such media) or Unopenable (the gateway cannot open where it is stored)."""
    uri = uri_of(story, kind)
    if not uri:
        raise NotFound(f"call {call_id} has no {kind}")
    where = resolver.resolve(uri)
    if isinstance(where, LocalFile):
        headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff",
                   "Content-Type": CONTENT_TYPES.get(where.path.suffix, "application/octet-stream")}
        if where.path.suffix == ".txt":
            headers["Content-Type"] += "; charset=utf-8"
        return web.FileResponse(where.path, headers=headers)
    # A presigned URL expires: the redirect must not outlive it in a cache.
    return web.Response(status=302, headers={"Location": where.url, "Cache-Control": "no-store"})


class NotFound(Exception):
    pass


def respond(resolver: MediaResolver, story: dict[str, Any], kind: str, call_id: str) -> web.StreamResponse:
    """The media, or the API's JSON error: 404 when the call has none, 503 when the gateway cannot open where it
    is stored (the message says what to configure)."""
    try:
        return answer(resolver, story, kind, call_id)
    except NotFound as err:
        return _error(grpc.StatusCode.NOT_FOUND, str(err))
    except Unopenable as err:
        log.warning("cannot open call %s's %s: %s", call_id, kind, err)
        return _error(grpc.StatusCode.UNAVAILABLE, f"call {call_id}'s {kind} cannot be opened: {err}")


def _error(code: grpc.StatusCode, message: str) -> web.Response:
    return web.Response(body=json.dumps(transcoding.error_body(code, message, [])).encode(),
                        status=transcoding.http_status(code), content_type="application/json")


async def transcript_text(resolver: MediaResolver, story: dict[str, Any]) -> tuple[str, str]:
    """(text, "") for a page to show the transcript inline, or ("", why it cannot be shown)."""
    uri = uri_of(story, "transcript")
    if not uri:
        return "", ""
    try:
        return await resolver.text(uri), ""
    except Unopenable as err:
        return "", str(err)
