"""Exactly-once responses for keyed calls: Redis is the fast path, PostgreSQL the guarantee.

Redis remembers each key's request fingerprint and first response, so a retry is answered without touching
PostgreSQL. Redis may lose keys (FLUSHALL, restart, eviction, TTL): then the retry reaches the storage
module, whose unique constraint on the same key finds the first write and rebuilds the same answer. Nothing
here is needed for correctness, only for speed; a Redis outage degrades to the PostgreSQL path."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from google.protobuf.message import Message

from services.runtime.errors import AlreadyExists

log = logging.getLogger("callersync.idempotency")

_IN_FLIGHT = b"I"
_DONE = b"D"
_FP_LEN = 32


def fingerprint(method: str, request: Message) -> bytes:
    """Identifies the parameters of a request, so the same key with other parameters is caught."""
    return hashlib.sha256(method.encode() + b"\0" + request.SerializeToString(deterministic=True)).digest()


def key_reused(key: str) -> AlreadyExists:
    return AlreadyExists(
        f"idempotency key {key!r} was already used for a different request; "
        "send a new key for a new request, or repeat the original parameters to get the original answer",
        reason="IDEMPOTENCY_KEY_REUSED",
        idempotency_key=key,
    )


class IdempotencyCache:
    def __init__(self, client: redis.Redis, namespace: str, retention_s: int, in_flight_s: int = 30) -> None:
        self._redis = client
        self._namespace = namespace
        self._retention_s = retention_s
        self._in_flight_s = in_flight_s

    def _redis_key(self, key: str) -> str:
        return f"idem:{self._namespace}:{key}"

    async def run(self, key: str, fp: bytes, work: Callable[[], Awaitable[bytes]]) -> bytes:
        """Returns the stored response for (key, fp), or runs `work` (which must itself be idempotent on key)."""
        rkey = self._redis_key(key)
        try:
            claimed = await self._redis.set(rkey, _IN_FLIGHT + fp, nx=True, ex=self._in_flight_s)
            if not claimed:
                held = await self._redis.get(rkey)
                if held is not None:
                    if held[1 : 1 + _FP_LEN] != fp:
                        raise key_reused(key)
                    if held[:1] == _DONE:
                        return held[1 + _FP_LEN :]
                # Same request still in flight elsewhere: the storage backstop makes running it again safe.
        except redis.RedisError as err:
            log.warning("redis unavailable for idempotency (%s); relying on PostgreSQL", err)
            return await work()
        try:
            response = await work()
        except BaseException:
            await self._forget(rkey)
            raise
        try:
            await self._redis.set(rkey, _DONE + fp + response, ex=self._retention_s)
        except redis.RedisError as err:
            log.warning("could not cache response for %s: %s", rkey, err)
        return response

    async def _forget(self, rkey: str) -> None:
        try:
            await self._redis.delete(rkey)
        except redis.RedisError:
            pass
