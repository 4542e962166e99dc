"""The floors of two issue-18 targets: what the irreducible work of a call costs on this stack, measured in the
same run as our services, so "out of reach" is a measurement, not an opinion.

- **Durable echo** (Charge's floor). A bare grpc.aio server, driven exactly like the Charge phase (same clients,
  load processes and ChargeRequest bytes), that per call does only what a durable exactly-once charge cannot
  skip: parse the request and fingerprint it, and one PostgreSQL round trip that
  locks the wallet rows, inserts the keyed entries (unique key, ON CONFLICT DO NOTHING) and updates the
  balances, in one statement, committed with synchronous_commit on, group-committed across concurrent calls
  exactly as the wallet does (services/runtime/group_commit.py, one batch in flight). No validation, no
  authorization, no telemetry, no logging, no pause/alert/auto-top-up rules, no outbox. Its throughput over the
  echo ceiling's is the most any durable Charge can reach here: `durable_echo_vs_echo_ceiling`.

- **RateCalls' database floor.** The database work a rated call cannot skip, sent straight from asyncpg with no
  gRPC and no service in between, batched as RateCalls is (batches of 200, the same batches in flight): per
  batch one statement and commit for billing's decisions (a keyed row per call with its facts) and one for the
  wallet's settlement (lock the payers, insert a capture entry per billable call, update their balances, mark
  every reservation captured or released). Omits billing's charges rows and CallRated events, so it is if
  anything generous. `rate_calls_db_floor_vs_pgbench` is the most any RateCalls could reach if only
  PostgreSQL's work counted.

    python bench/floors.py                    # both, against an embedded PostgreSQL and Valkey
    python bench/floors.py --with-redis       # then also as every attempt once consulted Redis (the fast path's
                                              # claim and store around each call: docs/performance.md)"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pathlib
import random
import subprocess
import sys
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from bench import common  # noqa: E402
from services.runtime import event_loop  # noqa: E402

DURABLE_METHOD = "/bench.DurableEcho/Charge"
SCHEMA_SQL = """
CREATE TABLE wallets (contractor_id text PRIMARY KEY, balance_cents bigint NOT NULL);
CREATE TABLE entries (
    entry_id bigserial PRIMARY KEY, contractor_id text NOT NULL, amount_cents bigint NOT NULL,
    balance_after_cents bigint NOT NULL, idempotency_key text NOT NULL UNIQUE, request_hash bytea NOT NULL,
    reference text NOT NULL, description text NOT NULL, reservation_id uuid,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE reservations (
    reservation_id uuid PRIMARY KEY, contractor_id text NOT NULL, amount_cents bigint NOT NULL,
    state text NOT NULL DEFAULT 'open', captured_cents bigint, capture_entry_id bigint);
CREATE TABLE decisions (
    call_id text PRIMARY KEY, contractor_id text NOT NULL, billable boolean NOT NULL, amount_cents bigint NOT NULL,
    facts bytea NOT NULL, decided_at timestamptz NOT NULL DEFAULT now());
"""

# One round trip per group-committed batch: lock the wallets in contractor order, insert the keyed entries
# (each with its running balance), add each wallet's total. A key seen before inserts nothing (a replay).
_CHARGE_BATCH = """
WITH op AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[], $6::text[])
                           WITH ORDINALITY AS o(c, a, k, h, ref, d, ord)),
w AS (SELECT contractor_id, balance_cents FROM wallets WHERE contractor_id IN (SELECT c FROM op)
      ORDER BY contractor_id FOR UPDATE),
e AS (INSERT INTO entries (contractor_id, amount_cents, balance_after_cents, idempotency_key, request_hash,
                           reference, description)
      SELECT op.c, -op.a, w.balance_cents - sum(op.a) OVER (PARTITION BY op.c ORDER BY op.ord), op.k, op.h, op.ref,
             op.d
      FROM op JOIN w ON w.contractor_id = op.c
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING entry_id, contractor_id, amount_cents, balance_after_cents, idempotency_key),
u AS (UPDATE wallets SET balance_cents = wallets.balance_cents + t.total
      FROM (SELECT contractor_id, sum(amount_cents) AS total FROM e GROUP BY contractor_id) t
      WHERE wallets.contractor_id = t.contractor_id)
SELECT * FROM e
"""
_REPLAYED = "SELECT entry_id, contractor_id, amount_cents, balance_after_cents, idempotency_key FROM entries" \
            " WHERE idempotency_key = ANY($1::text[])"

_DECIDE_BATCH = """
INSERT INTO decisions (call_id, contractor_id, billable, amount_cents, facts)
SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::bigint[], $5::bytea[])
ON CONFLICT (call_id) DO NOTHING
"""
# Billable items capture their reservation (an entry, the balance), free ones release it; one statement.
_SETTLE_BATCH = """
WITH op AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[])
                           WITH ORDINALITY AS o(rid, c, a, k, ord)),
w AS (SELECT contractor_id, balance_cents FROM wallets WHERE contractor_id IN (SELECT c FROM op WHERE a > 0)
      ORDER BY contractor_id FOR UPDATE),
e AS (INSERT INTO entries (contractor_id, amount_cents, balance_after_cents, idempotency_key, request_hash,
                           reference, description, reservation_id)
      SELECT op.c, -op.a, w.balance_cents - sum(op.a) OVER (PARTITION BY op.c ORDER BY op.ord), op.k, '\\x00',
             op.rid::text, 'call', op.rid
      FROM op JOIN w ON w.contractor_id = op.c WHERE op.a > 0
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING entry_id, contractor_id, amount_cents, reservation_id),
u AS (UPDATE wallets SET balance_cents = wallets.balance_cents + t.total
      FROM (SELECT contractor_id, sum(amount_cents) AS total FROM e GROUP BY contractor_id) t
      WHERE wallets.contractor_id = t.contractor_id),
s AS (UPDATE reservations r SET state = CASE WHEN op.a > 0 THEN 'captured' ELSE 'released' END,
             captured_cents = op.a, capture_entry_id = e.entry_id
      FROM op LEFT JOIN e ON e.reservation_id = op.rid
      WHERE r.reservation_id = op.rid AND r.state = 'open'
      RETURNING 1)
SELECT (SELECT count(*) FROM e) AS entries, (SELECT count(*) FROM s) AS settled
"""


async def make_schema(url: str, wallets: list[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA_SQL)
        await conn.execute("INSERT INTO wallets SELECT unnest($1::text[]), 100000000", wallets)
    finally:
        await conn.close()


# ---------------------------------------------------------------- the durable echo (server process)

async def serve_durable(port: int, database_url: str, redis_url: str) -> None:
    import grpc
    import redis.asyncio as redis

    from callersync.wallet.v1 import wallet_pb2 as pb
    from services.runtime.group_commit import GroupCommitter
    from services.runtime.idempotency import IdempotencyCache
    from services.runtime.redis_pipe import RedisPipe

    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4, statement_cache_size=256)
    # With a Redis URL (bench/floors.py --with-redis): every call also claims its key and stores its answer in
    # Redis, as every Charge did before first attempts skipped Redis; kept to measure what that cost.
    idempotency = IdempotencyCache(RedisPipe.like(redis.Redis.from_url(redis_url)), "floor", 900) if redis_url else None

    async def post_batch(ops: list) -> list:
        order = sorted(range(len(ops)), key=lambda i: ops[i].contractor_id)  # one global lock order
        ranked = [ops[i] for i in order]
        async with pool.acquire() as conn:
            rows = await conn.fetch(_CHARGE_BATCH, [o.contractor_id for o in ranked],
                                    [o.amount_cents for o in ranked], [o.idempotency_key for o in ranked],
                                    [o.request_hash for o in ranked], [o.reference for o in ranked],
                                    [o.description for o in ranked])
            by_key = {r["idempotency_key"]: r for r in rows}
            if len(by_key) < len(ops):  # replays: the first write's entry
                missing = [o.idempotency_key for o in ops if o.idempotency_key not in by_key]
                by_key.update({r["idempotency_key"]: r for r in await conn.fetch(_REPLAYED, missing)})
        return [by_key.get(o.idempotency_key) for o in ops]

    committer: GroupCommitter = GroupCommitter(post_batch, max_in_flight=1)

    class Op:
        __slots__ = ("contractor_id", "amount_cents", "idempotency_key", "request_hash", "reference", "description")

        def __init__(self, r, fp: bytes) -> None:
            self.contractor_id, self.amount_cents, self.idempotency_key = r.contractor_id, r.amount_cents, \
                r.idempotency_key
            self.request_hash, self.reference, self.description = fp, r.reference, r.description

    async def charge(request: bytes, context) -> bytes:
        r = pb.ChargeRequest.FromString(request)
        fp = hashlib.sha256(b"Charge\0" + request).digest()

        async def work() -> bytes:
            row = await committer.submit(Op(r, fp))
            return pb.ChargeResponse(entry=pb.LedgerEntry(
                entry_id=row["entry_id"], contractor_id=row["contractor_id"], kind=pb.ENTRY_KIND_CHARGE,
                amount_cents=row["amount_cents"], balance_after_cents=row["balance_after_cents"],
                idempotency_key=row["idempotency_key"])).SerializeToString()

        return await idempotency.run(r.idempotency_key, fp, work, retry=True) if idempotency else await work()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.DurableEcho", {"Charge": grpc.unary_unary_rpc_method_handler(charge)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def durable_echo(servers: common.Stack, args: argparse.Namespace, redis_db: int | None = None) -> dict:
    """The Charge phase's load (bench/wallet_charge.run_charges) against the durable echo; same figures as the
    echo ceiling, plus PostgreSQL's CPU per call and how many charges each commit carried."""
    from bench import wallet_charge

    wallets = [f"floor-{i:05d}" for i in range(args.wallets)]
    async with common.scratch_database(servers.database_url, "bench_floor") as url:
        await make_schema(url, wallets)
        port = common.free_port()
        redis_url = servers.redis_for(redis_db) if redis_db is not None else ""
        proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--durable-server", str(port),
                                 "--database", url, "--redis", redis_url])
        try:
            common.wait_port(port, 30)
            await asyncio.sleep(0.3)  # the pool's first connections
            figures = await asyncio.to_thread(
                wallet_charge.run_charges, [f"127.0.0.1:{port}"], wallets, args, uuid.uuid4().hex[:6], [proc.pid],
                await common.backend_pids(url), DURABLE_METHOD)
            figures["peak_memory_mb"] = {"durable echo": common.peak_memory_mb(proc.pid)}
        finally:
            proc.terminate()
            proc.wait(10)
        conn = await asyncpg.connect(url)
        try:
            entries = await conn.fetchval("SELECT count(*) FROM entries")
            commits = await conn.fetchval("SELECT count(DISTINCT xmin::text) FROM entries")
        finally:
            await conn.close()
    calls = figures.pop("charges_per_s")
    out = {"calls_per_s": calls, "server_cpu_us_per_call": figures.pop("wallet_cpu_us_per_charge"),
           "postgres_cpu_us_per_call": figures.pop("postgres_cpu_us_per_charge"),
           "client_cpu_us_per_call": figures.pop("client_cpu_us_per_charge"), **figures,
           "clients": args.clients, "entries": entries, "charges_per_commit": round(entries / max(1, commits), 1),
           "ok": entries == figures["acknowledged"] and not figures["errors"]}
    what = "Redis claim and store + " if redis_db is not None else ""
    print(f"durable echo ({what}one group-committed PostgreSQL statement), {args.clients} clients: "
          f"{calls:,.0f} calls/s  p50 {out['p50_ms']:.1f} ms  p99 {out['p99_ms']:.1f} ms; CPU per call: server "
          f"{out['server_cpu_us_per_call']:.0f} us, PostgreSQL {out['postgres_cpu_us_per_call']:.0f} us, load "
          f"generator {out['client_cpu_us_per_call']:.0f} us; {out['charges_per_commit']} charges/commit; "
          f"entries {'= acknowledged' if out['ok'] else 'MISMATCH ' + str((entries, figures['acknowledged']))}",
          flush=True)
    return out


# ---------------------------------------------------------------- RateCalls' database floor

async def rate_calls_db_floor(servers: common.Stack, calls: int, batch: int, in_flight: tuple[int, ...],
                              contractors: int = 200) -> dict:
    """Rated calls/s of the irreducible database work alone, at each number of batches in flight."""
    rng = random.Random(7)
    wallets = [f"floor-{i}" for i in range(contractors)]
    out: dict = {"batch": batch, "calls": calls}
    async with common.scratch_database(servers.database_url, "bench_floor_rate") as url:
        await make_schema(url, wallets)
        for k in in_flight:
            items = []
            for i in range(calls):
                billable = rng.random() < 0.5  # about the RateCalls mix: half billable
                items.append((uuid.uuid4(), f"call-{k}-{i}", rng.choice(wallets), 4500 if billable else 0,
                              rng.randbytes(240)))  # ~ a serialized FinishedCall
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("INSERT INTO reservations (reservation_id, contractor_id, amount_cents) "
                                   "SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[])",
                                   [x[0] for x in items], [x[2] for x in items], [4500] * calls)
                await conn.execute("VACUUM ANALYZE reservations")
            finally:
                await conn.close()
            batches = [items[i:i + batch] for i in range(0, calls, batch)]
            pool = await asyncpg.create_pool(url, min_size=k, max_size=k)
            try:
                pg = await common.backend_pids(url)
                queue = list(reversed(batches))

                async def worker(pool: asyncpg.Pool, queue: list) -> None:
                    async with pool.acquire() as conn:
                        while queue:
                            b = queue.pop()
                            await conn.execute(_DECIDE_BATCH, [x[1] for x in b], [x[2] for x in b],
                                               [x[3] > 0 for x in b], [x[3] for x in b], [x[4] for x in b])
                            b = sorted(b, key=lambda x: x[2])  # payers in one global lock order
                            await conn.fetchrow(_SETTLE_BATCH, [x[0] for x in b], [x[2] for x in b],
                                                [x[3] for x in b], [f"capture:{x[0]}" for x in b])

                cpu0, t0 = common.cpu_seconds(pg), time.perf_counter()
                await asyncio.gather(*(worker(pool, queue) for _ in range(k)))
                seconds = time.perf_counter() - t0
                pg_us = (common.cpu_seconds(pg) - cpu0) / calls * 1e6
            finally:
                await pool.close()
            out[f"in_flight_{k}"] = {"rated_calls_per_s": round(calls / seconds, 1), "seconds": round(seconds, 3),
                                     "postgres_cpu_us_per_call": round(pg_us, 1)}
            print(f"RateCalls' database work alone (batches of {batch}, {k} in flight): "
                  f"{calls / seconds:,.0f} rated calls/s; PostgreSQL CPU per call {pg_us:.0f} us", flush=True)
        conn = await asyncpg.connect(url)
        try:
            out["ok"] = await conn.fetchval("SELECT count(*) FROM reservations WHERE state = 'open'") == 0
        finally:
            await conn.close()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durable-server", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--database", default="", help=argparse.SUPPRESS)
    parser.add_argument("--redis", default="", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=20000, help="rated calls for the RateCalls floor")
    parser.add_argument("--with-redis", action="store_true",
                        help="also run the durable echo claiming and storing every key in Redis (then without again)")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    from bench import wallet_charge

    with common.stack() as st:
        wargs = wallet_charge.parse_args(["--quick"])
        await wallet_charge.echo_ceiling(wargs)
        await durable_echo(st, wargs)
        if args.with_redis:
            await durable_echo(st, wargs, 1)
            await durable_echo(st, wargs)
        await rate_calls_db_floor(st, args.calls, 200, (2, 8))


if __name__ == "__main__":
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    parsed = parse_args()
    if parsed.durable_server:
        event_loop.run(serve_durable(parsed.durable_server, parsed.database, parsed.redis))
    else:
        event_loop.run(main(parsed))
