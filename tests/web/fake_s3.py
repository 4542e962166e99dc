"""A stand-in for S3 at a local address: answers a presigned GET (path-style, every SigV4 query parameter
present) with a WAV tone for .wav keys and a line of text for .txt keys, and 403 without a signature. The
signature itself is checked against AWS's published example in tests/gateway/test_media_resolver.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from services.gateway.media.dev_media import tone_wav

SIGNED = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
          "X-Amz-Signature")


def transcript_of(bucket: str, key: str) -> str:
    return f"Transcript from S3: {bucket}/{key}"


async def _get(request: web.Request) -> web.StreamResponse:
    if any(name not in request.query for name in SIGNED):
        return web.Response(status=403, text="AccessDenied: not a presigned request")
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    if key.endswith(".wav"):
        return web.Response(body=tone_wav(0.5), content_type="audio/wav")
    return web.Response(text=transcript_of(bucket, key), content_type="text/plain")


@asynccontextmanager
async def running() -> AsyncIterator[str]:
    app = web.Application()
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
