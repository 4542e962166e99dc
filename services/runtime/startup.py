"""Before serving: PostgreSQL and Redis must answer. Either wait for them (CALLERSYNC_STARTUP_WAIT_S) or stop
with one line saying which one is missing, never serve without them."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import redis.asyncio as redis

from services.runtime.config import Settings
from services.runtime.db import redact

log = logging.getLogger("callersync.startup")


async def _postgres(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    await conn.close()


async def _redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def wait_for_dependencies(service: str, settings: Settings) -> None:
    if not settings.database_url:
        raise SystemExit(f"{service}: CALLERSYNC_DATABASE_URL is not set (callersync up starts an embedded one)")
    if not settings.redis_url:
        raise SystemExit(f"{service}: CALLERSYNC_REDIS_URL is not set (callersync up starts an embedded one)")
    deadline = time.monotonic() + settings.startup_wait_s
    checks = (("PostgreSQL", settings.database_url, _postgres), ("Redis", settings.redis_url, _redis))
    for name, url, check in checks:
        while True:
            try:
                await check(url)
                break
            except Exception as err:  # any failure to reach it is the same answer: not there yet
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                if time.monotonic() >= deadline:
                    raise SystemExit(f"{service}: cannot reach {name} at {redact(url)}: {reason}") from None
                log.warning("%s: waiting for %s at %s: %s", service, name, redact(url), reason)
                await asyncio.sleep(1)
