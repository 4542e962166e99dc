"""A Redis Streams consumer-group reader: at least once, resumes after a restart, and takes over the
pending entries of a consumer that died (XAUTOCLAIM). The handler must be idempotent: an entry is
acknowledged only after it returned, so a crash in between delivers the entry again."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import redis.asyncio as redis

from services.runtime.background import Loop

Entry = tuple[bytes, dict[bytes, bytes]]
Handler = Callable[[Sequence[Entry]], Awaitable[None]]
# XREADGROUP on one stream, as our client (RESP2, no decode_responses) returns it: [[stream, entries]]. redis-py's
# stubs give the union over every protocol and decoding, which cannot be indexed like this.
ReadReply = list[tuple[bytes, list[Entry]]]


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamConsumer:
    def __init__(self, client: redis.Redis, stream: str, group: str, handler: Handler, *, consumer: str = "",
                 batch_size: int = 200, block_ms: int = 500, claim_idle_ms: int = 30_000,
                 linger_ms: int = 0, on_group_created: Callable[[], None] = lambda: None) -> None:
        self._redis = client
        self.stream = stream
        self._group = group
        self._handler = handler
        self.consumer = consumer or consumer_name()
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        # After a short read, wait this long before the next one, so a busy stream is handled in batches
        # (one handler call and one XACK for many entries) instead of an entry or two per round trip.
        self._linger_s = linger_ms / 1000
        self._recovered_at: float | None = None
        # A group created here (a first start, or Redis lost the stream): events published before it may be gone.
        self._on_group_created = on_group_created
        # After a failure (PostgreSQL or Redis away) the entries stay pending: retry in a second.
        self._loop = Loop(f"consumer {self.consumer} of {stream}", self._poll_and_linger, lambda: asyncio.sleep(0),
                          retry_s=1.0, on_error=self._failed)
        self._group_ready = False

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the stream's start: a new group (a first deployment) replays every event still kept.
            await self._redis.xgroup_create(self.stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        else:
            self._on_group_created()
        self._group_ready = True

    async def poll_once(self, block: bool = False) -> int:
        """Handles new entries, and first (on the first poll, after a failure, then every half claim_idle_ms)
        this consumer's own pending ones and dead consumers' idle ones: recovery on every poll tripled the
        round trips per batch."""
        await self.ensure_group()
        handled = 0
        now = asyncio.get_running_loop().time()
        if self._recovered_at is None or now - self._recovered_at >= self._claim_idle_ms / 2000:
            handled += await self._recover()
            self._recovered_at = now
        fresh = cast(ReadReply, await self._redis.xreadgroup(self._group, self.consumer, {self.stream: ">"},
                                                             count=self._batch_size,
                                                             block=self._block_ms if block else None))
        handled += await self._handle(fresh[0][1] if fresh else [])
        return handled

    async def _recover(self) -> int:
        # Our own unacknowledged entries: what a restart under the same name, or a failed handler, left behind.
        own = cast(ReadReply, await self._redis.xreadgroup(self._group, self.consumer, {self.stream: "0"},
                                                           count=self._batch_size))
        handled = await self._handle(own[0][1] if own else [])
        start = "0-0"
        while True:
            start, claimed, *_ = await self._redis.xautoclaim(
                self.stream, self._group, self.consumer, self._claim_idle_ms, start_id=start, count=self._batch_size)
            handled += await self._handle(claimed)
            if start in (b"0-0", "0-0") or not claimed:
                return handled

    async def drain(self) -> int:
        total = 0
        while n := await self.poll_once():
            total += n
        return total

    async def _handle(self, entries: Sequence[Entry]) -> int:
        entries = [(eid, fields) for eid, fields in entries if fields is not None]  # trimmed away meanwhile
        if not entries:
            return 0
        try:
            await self._handler(entries)
        except BaseException:
            self._recovered_at = None  # the entries stay pending: read them again on the next poll
            raise
        await self._redis.xack(self.stream, self._group, *[eid for eid, _ in entries])
        return len(entries)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _poll_and_linger(self) -> None:
        if 0 < await self.poll_once(block=True) < self._batch_size and self._linger_s:
            await asyncio.sleep(self._linger_s)

    def _failed(self, err: Exception) -> None:
        if isinstance(err, redis.ResponseError) and "NOGROUP" in str(err):
            # Redis lost the group (FLUSHALL, a failover to an empty replica): create it again.
            self._group_ready = False
