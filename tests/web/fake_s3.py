"""A stand-in for S3 at a local address: answers a presigned GET (path-style, every SigV4 query parameter
present) with a WAV tone for .wav keys and a line of text for .txt keys, and 403 without a signature. The
signature itself is checked against AWS's published example in tests/gateway/test_media_resolver.py.

Two kinds of key misbehave on purpose: `large-<n>.txt` is n bytes of text sent in small pieces over time (as a
real store streams a big object), and `moved-*` answers a redirect to an unsigned path on this same loopback
server, standing in for a store that points the gateway at an internal address."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from services.gateway.media.dev_media import tone_wav

SIGNED = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
          "X-Amz-Signature")
INTERNAL_SECRET = "INTERNAL-METADATA-SECRET"
PIECE = 4096


def transcript_of(bucket: str, key: str) -> str:
    return f"Transcript from S3: {bucket}/{key}"


def large_text(size: int) -> bytes:
    line = b"Caller: a line of a long transcript.\n"
    return (line * (size // len(line) + 1))[:size]


async def _get(request: web.Request) -> web.StreamResponse:
    if any(name not in request.query for name in SIGNED):
        return web.Response(status=403, text="AccessDenied: not a presigned request")
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    if key.startswith("moved-"):
        raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/internal/secret")
    large = re.fullmatch(r"large-(\d+)\.txt", key)
    if large:
        return await _stream(request, large_text(int(large.group(1))))
    if key.endswith(".wav"):
        return web.Response(body=tone_wav(0.5), content_type="audio/wav")
    return web.Response(text=transcript_of(bucket, key), content_type="text/plain")


async def _stream(request: web.Request, body: bytes) -> web.StreamResponse:
    reply = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await reply.prepare(request)
    for start in range(0, len(body), PIECE):
        await reply.write(body[start:start + PIECE])
        await asyncio.sleep(0.001)
    await reply.write_eof()
    return reply


async def _internal(request: web.Request) -> web.Response:
    return web.Response(text=INTERNAL_SECRET)


@asynccontextmanager
async def running() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/internal/secret", _internal)
    app.router.add_get("/{bucket}/{key:.+}", _get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
