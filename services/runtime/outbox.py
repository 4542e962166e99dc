"""Transactional outbox relay: rows written with the change that caused them are published after commit.

A row is marked published in the same transaction that locked it, after its handler succeeded, so a crash
before the mark republishes it (at least once; consumers dedupe by event id) and two relays never handle
the same row at once (FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from opentelemetry import metrics

from services.runtime.background import NudgedLoop
from services.runtime.outbox_rows import Row
from services.runtime.redis_pipe import RedisPipe, pack

log = logging.getLogger("callersync.outbox")

Handler = Callable[[Sequence[Row]], Awaitable[None]]


class OutboxRelay(NudgedLoop):
    def __init__(
        self, pool: asyncpg.Pool, table: str, handlers: dict[str, Handler], poll_ms: int, batch_size: int = 200
    ) -> None:
        self._pool = pool
        self._table = table
        self._handlers = handlers
        self._batch_size = batch_size
        super().__init__(f"outbox relay {table}", self.drain, poll_ms)
        # How long events waited between their commit and their publication: the relay's health at a glance.
        # One sample per relayed batch, its oldest event's (the worst wait, which is what an alert watches): a
        # sample per event cost ~7 µs each with metrics on, one per rated call in billing.
        self._lag = metrics.get_meter("callersync.outbox").create_histogram(
            "outbox.lag", unit="ms", description="commit-to-publish delay of the oldest event in each relayed batch"
        )

    async def relay_once(self, topic: str) -> int:
        """Handles one batch of the topic's unpublished rows; returns how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT event_id, topic, payload, created_at FROM {self._table}"
                " WHERE published_at IS NULL AND topic = $1 ORDER BY event_id LIMIT $2 FOR UPDATE SKIP LOCKED",
                topic,
                self._batch_size,
            )
            if not rows:
                return 0
            await self._handlers[topic](rows)
            await conn.execute(
                f"UPDATE {self._table} SET published_at = now() WHERE event_id = ANY($1::bigint[])",
                [r["event_id"] for r in rows],
            )
            oldest = min(row["created_at"] for row in rows)
            self._lag.record((dt.datetime.now(dt.UTC) - oldest).total_seconds() * 1000.0, {"topic": topic})
            return len(rows)

    async def drain(self) -> int:
        total = 0
        for topic in self._handlers:
            while n := await self.relay_once(topic):
                total += n
        return total

def stream_publisher(
    pipe: RedisPipe, stream: str, encode: Callable[[Row], dict[str, bytes | int | str]], maxlen: int = 1_000_000
) -> Handler:
    """Publishes outbox rows to a Redis stream in one pipelined write; `encode` gives each entry's fields, which
    carry the outbox event id so consumers can dedupe."""
    head = (b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*")

    async def publish(rows: Sequence[Row]) -> None:
        await pipe.pipeline([pack((*head, *(x for kv in encode(row).items() for x in kv))) for row in rows])

    return publish
