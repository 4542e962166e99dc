"""SQL for a contractor's calls (billing.call_contractors): which contractors each rated call rang, written with
the call's decision, read newest first for ListContractorCalls and per day for GetContractorCallStats."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from services.billing.records import CallDay, RatedCall
from services.runtime.db import storage_errors


async def index_calls(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Within the transaction storing decisions: one row per (call, contractor rung). Each decision row carries
    the contractors its legs rang under "contractors" (popped by the caller before the decision insert)."""
    calls, contractors, started, payer, charged = [], [], [], [], []
    for r in rows:
        for cid in r["contractors"]:
            pays = r["billable"] and cid == r["payer_contractor_id"]
            calls.append(r["call_id"])
            contractors.append(cid)
            started.append(r["started_at"])
            payer.append(pays)
            charged.append(r["price_cents"] if pays else 0)
    if calls:
        await conn.execute(
            "INSERT INTO billing.call_contractors (call_id, contractor_id, started_at, payer, charged_cents)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::boolean[], $5::bigint[])"
            " ON CONFLICT DO NOTHING",
            calls, contractors, started, payer, charged,
        )


class ContractorCalls:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(self, contractor_id: str, since: dt.datetime | None,
                   before: tuple[dt.datetime, str] | None, limit: int) -> list[RatedCall]:
        """The rated calls that rang the contractor, newest first (by started_at, then call id)."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT r.* FROM billing.call_contractors c JOIN billing.rated_calls r USING (call_id)"
                " WHERE c.contractor_id = $1 AND ($2::timestamptz IS NULL OR c.started_at >= $2)"
                " AND ($3::timestamptz IS NULL OR (c.started_at, c.call_id) < ($3, $4::text))"
                " ORDER BY c.started_at DESC, c.call_id DESC LIMIT $5",
                contractor_id, since, before[0] if before else None, before[1] if before else None, limit,
            )
        return [RatedCall.from_row(r) for r in rows]

    async def per_day(self, contractor_id: str, first_day: dt.date, days: int) -> list[CallDay]:
        """Each UTC day from first_day on, days without calls included."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT g.day,"
                " count(c.call_id) FILTER (WHERE c.payer) AS billable_calls,"
                " coalesce(sum(c.charged_cents) FILTER (WHERE c.payer), 0)::bigint AS billable_cents,"
                " count(c.call_id) FILTER (WHERE NOT c.payer) AS free_calls"
                " FROM (SELECT $2::date + n AS day FROM generate_series(0, $3 - 1) AS n) g"
                " LEFT JOIN billing.call_contractors c ON c.contractor_id = $1"
                "  AND c.started_at >= g.day::timestamp AT TIME ZONE 'UTC'"
                "  AND c.started_at < (g.day + 1)::timestamp AT TIME ZONE 'UTC'"
                " GROUP BY g.day ORDER BY g.day",
                contractor_id, first_day, days,
            )
        return [CallDay.from_row(r) for r in rows]
