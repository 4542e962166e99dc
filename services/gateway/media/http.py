"""The answer to GET .../calls/{call_id}/recording and .../transcript, once ExplainCall (with the caller's own
scope) has said where the call's media is: a redirect to a URL a browser can open, or the development file."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import grpc
from aiohttp import web

from services.gateway import transcoding
from services.gateway.media.resolver import LocalFile, MediaResolver, Unopenable

log = logging.getLogger("callersync.gateway.media")

KINDS = ("recording", "transcript")
PATH_KIND = "{kind:recording|transcript}"
# The gateway's own media routes, for CORS preflight (they are not in the protos' route table).
MEDIA_PATH = re.compile(r"/v1/(contractors/[^/]+/)?calls/[^/]+/(recording|transcript)")
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".txt": "text/plain"}


class NotFound(Exception):
    """The call has no media of that kind: 404."""


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


def respond(resolver: MediaResolver, story: dict[str, Any], kind: str, call_id: str,
            request_id: str) -> web.StreamResponse:
    """The media, or the API's JSON error: 404 when the call has none, 503 when the gateway cannot open where it
    is stored. Why it cannot names folders, settings and stores: that goes to the log, under the request id the
    caller is given, not to the caller."""
    try:
        return answer(resolver, story, kind, call_id)
    except NotFound as err:
        return _error(grpc.StatusCode.NOT_FOUND, str(err))
    except Unopenable as err:
        log.warning("cannot open call %s's %s (request_id=%s): %s", call_id, kind, request_id, err)
        return _error(grpc.StatusCode.UNAVAILABLE, f"call {call_id}'s {kind} cannot be opened just now; the "
                      f"operators can look it up by request id {request_id}")


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
        # The reason names settings and stores: for the log, not for a contractor's page.
        log.warning("cannot show the transcript at %s: %s", uri, err)
        return "", "it could not be read just now"
    except Exception:
        # Whatever else a stored address provokes, the rest of the call's page still shows.
        log.exception("cannot show the transcript at %r", uri)
        return "", "it could not be read just now"


def openapi_paths() -> dict[str, Any]:
    """The media routes in the OpenAPI document: they are the gateway's own, not a proto's annotation."""
    paths: dict[str, Any] = {}
    for prefix, scope in (("/v1/calls/{call_id}", "operators any call; a contractor a call that rang them"),
                          ("/v1/contractors/{contractor_id}/calls/{call_id}", "a contractor their own calls")):
        names = ["contractor_id", "call_id"] if "contractor_id" in prefix else ["call_id"]
        for kind in KINDS:
            paths[f"{prefix}/{kind}"] = {"get": {
                "operationId": f"CallMedia_{kind}{'_own' if 'contractor_id' in prefix else ''}",
                "tags": ["CallMedia"],
                "summary": f"The call's {kind}",
                "description": f"The call's {kind}, for whoever may ExplainCall the call ({scope}): a redirect to "
                               "a URL a browser opens, or the development file. Access: as ExplainCall.",
                "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                               for n in names],
                "responses": {
                    "200": {"description": "The development media folder's file (range requests honoured)."},
                    "302": {"description": "Location: a URL a browser opens (S3 presigned, or the stored https URL "
                                               "on a CALLERSYNC_MEDIA_ALLOWED_HOSTS host)."},
                    "default": {"description": "404 when the call has none; 503 when the gateway cannot open "
                                               "where it is stored."},
                },
            }}
    return paths
