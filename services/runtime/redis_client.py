"""The shared redis-py asyncio client: a blocking pool, so a burst waits for a connection instead of failing."""

from __future__ import annotations

import redis.asyncio as redis


def create_redis(url: str, max_connections: int = 32) -> redis.Redis:
    if not url:
        raise SystemExit("CALLERSYNC_REDIS_URL is not set (callersync up starts an embedded Valkey)")
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=5, socket_timeout=5, socket_connect_timeout=3
    )
    return redis.Redis(connection_pool=pool)
