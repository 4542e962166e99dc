"""Exactly-once responses for keyed calls: PostgreSQL is the guarantee, Redis the fast path for retries.

A first attempt goes straight to the storage module, whose unique constraint on the key finds an earlier write
and rebuilds the same answer, so a first attempt needs nothing from Redis. A request that says it is a retry
(`x-retry-attempt`, which our clients set, or `grpc-previous-rpc-attempts`, which gRPC's own retry policy sets)
is answered from Redis when Redis holds the answer, and its answer is stored there, so a retry storm after an
outage lands on Redis and not on the ledger. A first attempt does not ask Redis because a claim and a store
around every commit are two round trips for answers almost never read, a large share of the wallet's CPU per
Charge (docs/performance.md, "A first attempt ... goes to PostgreSQL alone"). Redis may lose keys (FLUSHALL,
restart, eviction, TTL): a retry then reaches PostgreSQL, which answers it. A Redis outage degrades to the
PostgreSQL path."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable

import redis.asyncio as redis
from google.protobuf.message import Message

from services.runtime.errors import AlreadyExists
from services.runtime.group_commit import GroupCommitter
from services.runtime.redis_pipe import RedisPipe, Script, pack

log = logging.getLogger("callersync.idempotency")

_IN_FLIGHT = b"I"
_DONE = b"D"
_FP_LEN = 32
_CLAIM = b"c"
_STORE = b"s"
# KEYS[i] with ARGV[2i+1] (c: claim, s: store) and ARGV[2i+2] (the value). A claim sets the in-flight marker
# unless the key is held and then answers what holds it (false when claimed); a store keeps the response.
# Atomic per key, as SET NX followed by GET would not be. Single-instance Redis: keys span hash slots.
_BATCH_SCRIPT = Script("idempotency_batch", """
local in_flight_s, retention_s = ARGV[1], ARGV[2]
local out = {}
for i, key in ipairs(KEYS) do
    local op, value = ARGV[2 * i + 1], ARGV[2 * i + 2]
    if op == 'c' then
        if redis.call('SET', key, value, 'NX', 'EX', in_flight_s) then
            out[i] = false
        else
            out[i] = redis.call('GET', key)
        end
    else
        redis.call('SET', key, value, 'EX', retention_s)
        out[i] = false
    end
end
return out
""")


# Metadata a resent request carries: ours (the attempts before this one), and gRPC's retry policy's.
RETRY_ATTEMPT_KEY = "x-retry-attempt"
_RETRY_KEYS = (RETRY_ATTEMPT_KEY, "grpc-previous-rpc-attempts")


def retry_metadata(attempt: int) -> tuple[tuple[str, str], ...] | None:
    """The metadata of the attempt-th sending of a keyed request (1 is the first, which carries none)."""
    return ((RETRY_ATTEMPT_KEY, str(attempt - 1)),) if attempt > 1 else None


def is_retry(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    # A plain loop: asked on every money movement, and any() over a generator cost ~1 % of the wallet's CPU.
    for key, value in metadata or ():
        if key in _RETRY_KEYS and value not in ("", "0"):
            return True
    return False


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
    def __init__(self, pipe: RedisPipe, namespace: str, retention_s: int, in_flight_s: int = 30) -> None:
        # The claims and stored answers of concurrent calls go to Redis together, as one script call per batch
        # (one command, one round trip).
        self._pipe = pipe
        self._namespace = namespace
        self._retention_s = retention_s
        self._in_flight_s = in_flight_s
        self._batches: GroupCommitter[tuple[bytes, str, bytes], bytes | None] = GroupCommitter(
            self._run_batch, max_in_flight=1, retry_alone=False
        )

    async def _run_batch(self, ops: list[tuple[bytes, str, bytes]]) -> list[bytes | None]:
        args: list[bytes | int] = [self._in_flight_s, self._retention_s]
        for op, _, value in ops:
            args += (op, value)
        return await self._pipe.run(_BATCH_SCRIPT, [rkey for _, rkey, _ in ops], args)

    def _redis_key(self, key: str) -> str:
        return f"idem:{self._namespace}:{key}"

    async def run(self, key: str, fp: bytes, work: Callable[[], Awaitable[bytes]], *, retry: bool) -> bytes:
        """Runs `work` (which must itself be idempotent on key); a retry is first looked up in Redis, and its
        answer kept there for the retries after it."""
        if not retry:
            return await work()
        rkey = self._redis_key(key)
        try:
            held = await self._batches.submit((_CLAIM, rkey, _IN_FLIGHT + fp))
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
            await self._batches.submit((_STORE, rkey, _DONE + fp + response))
        except redis.RedisError as err:
            log.warning("could not cache response for %s: %s", rkey, err)
        return response

    async def _forget(self, rkey: str) -> None:
        try:
            await self._pipe.call(pack((b"DEL", rkey)))
        except redis.RedisError:
            pass
