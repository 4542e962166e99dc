"""All of billing's SQL: the rate card, decisions, bookings, charges, refund cases and the outbox."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from services.billing import events, ratecard
from services.billing.calls_storage import index_calls
from services.billing.records import Booking, BookingFee, Charge, RatedCall, RefundCase, Unsettled, ZipRate
from services.runtime.db import storage_errors

SCHEMA = "billing"
OUTBOX_TABLE = "billing.outbox"

_RATE_VERSIONS = """
SELECT zip, effective_from, rate_cents, set_by, created_at,
       lead(effective_from) OVER (PARTITION BY zip ORDER BY effective_from) AS effective_until
FROM billing.zip_rates WHERE ($1::text IS NULL OR zip = $1)
"""
_FEE_VERSIONS = """
SELECT effective_from, fee_cents, set_by, created_at,
       lead(effective_from) OVER (ORDER BY effective_from) AS effective_until
FROM billing.booking_fees
"""
_FEE_AT = (
    "SELECT fee_cents, effective_from FROM billing.booking_fees WHERE effective_from <= $1"
    " ORDER BY effective_from DESC LIMIT 1"
)
_OUTBOX = "INSERT INTO billing.outbox (topic, payload) VALUES ($1, $2)"


# Column types for the batched (unnest) writes of a RateCalls batch.
_DECISION_TYPES = {
    "call_id": "text", "facts_hash": "bytea", "facts": "bytea", "zip": "text", "caller_number": "text",
    "started_at": "timestamptz", "billable": "boolean", "rule": "text", "payer_contractor_id": "text",
    "price_cents": "bigint", "decision": "bytea", "capture_reservation_id": "text", "state": "text",
}
_CALL_CHARGE_TYPES = {
    "charge_id": "text", "contractor_id": "text", "kind": "text", "call_id": "text", "zip": "text",
    "amount_cents": "bigint", "wallet_entry_id": "bigint", "recording_uri": "text", "disclosure_played": "boolean",
    "transcript_uri": "text",
}


def _unnest_insert(table: str, types: dict[str, str], conflict: str, returning: str = "") -> str:
    cols = list(types)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest("
        + ", ".join(f"${i + 1}::{types[c]}[]" for i, c in enumerate(cols))
        + f") ON CONFLICT ({conflict}) DO NOTHING {returning}"
    )


def _columns(rows: Sequence[dict[str, Any]], types: dict[str, str]) -> list[list[Any]]:
    return [[r[c] for r in rows] for c in types]


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"billing:{name}".encode()).digest()[:8], "big", signed=True)


# Setting a price takes the key exclusively; pricing a call or booking takes it shared, so a new version can
# never slip in between reading the price and storing what was billed at it.
FEE_LOCK = _lock_key("booking_fee")


def zip_lock(zip_code: str) -> int:
    return _lock_key(f"zip:{zip_code}")


class BillingStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def now(self) -> dt.datetime:
        async with storage_errors():
            return await self._pool.fetchval("SELECT now()")

    async def republish(self, since: dt.datetime | None) -> int:
        """Marks the events recorded since `since` (all when None) unpublished, so the relay publishes them
        again; how many."""
        async with storage_errors():
            return await self._pool.fetchval(
                "WITH again AS (UPDATE billing.outbox SET published_at = NULL"
                " WHERE published_at IS NOT NULL AND ($1::timestamptz IS NULL OR created_at >= $1) RETURNING 1)"
                " SELECT count(*) FROM again", since)

    # ------------------------------------------------------------ rate card

    async def set_zip_rate(
        self, zip_code: str, rate_cents: int, effective_from: dt.datetime, set_by: str, event: Callable[[int], bytes]
    ) -> ZipRate:
        """Stores a rate version and its ZipRateChanged event in one transaction; a same-rate repeat is a no-op."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", zip_lock(zip_code))
            now = await conn.fetchval("SELECT now()")
            existing = await conn.fetchrow(
                "SELECT rate_cents FROM billing.zip_rates WHERE zip = $1 AND effective_from = $2", zip_code,
                effective_from,
            )
            if existing is not None:
                refusal = ratecard.version_conflict(
                    f"ZIP {zip_code}'s rate", existing["rate_cents"], rate_cents, effective_from, now
                )
                if refusal:
                    raise refusal
            if existing is None or existing["rate_cents"] != rate_cents:
                first = await conn.fetchval(
                    "SELECT min(started_at) FROM billing.rated_calls WHERE zip = $1 AND started_at >= $2",
                    zip_code, effective_from,
                )
                if first is not None:
                    raise ratecard.repricing_refused(f"a rate for ZIP {zip_code}", effective_from, first)
                previous = await conn.fetchval(
                    "SELECT rate_cents FROM billing.zip_rates WHERE zip = $1 AND effective_from < $2"
                    " ORDER BY effective_from DESC LIMIT 1",
                    zip_code, effective_from,
                )
                await conn.execute(
                    "INSERT INTO billing.zip_rates (zip, effective_from, rate_cents, set_by) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (zip, effective_from) DO UPDATE"
                    " SET rate_cents = EXCLUDED.rate_cents, set_by = EXCLUDED.set_by, created_at = now()",
                    zip_code, effective_from, rate_cents, set_by,
                )
                await conn.execute(_OUTBOX, events.TOPIC, event(previous or 0))
            return ZipRate.from_row(await conn.fetchrow(
                f"SELECT * FROM ({_RATE_VERSIONS}) v WHERE effective_from = $2", zip_code, effective_from
            ))

    async def set_booking_fee(
        self, fee_cents: int, effective_from: dt.datetime, set_by: str, event: Callable[[int], bytes]
    ) -> BookingFee:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FEE_LOCK)
            now = await conn.fetchval("SELECT now()")
            existing = await conn.fetchrow(
                "SELECT fee_cents FROM billing.booking_fees WHERE effective_from = $1", effective_from
            )
            if existing is not None:
                refusal = ratecard.version_conflict(
                    "the booking fee", existing["fee_cents"], fee_cents, effective_from, now
                )
                if refusal:
                    raise refusal
            if existing is None or existing["fee_cents"] != fee_cents:
                first = await conn.fetchval(
                    "SELECT min(scheduled_at) FROM billing.bookings WHERE scheduled_at >= $1", effective_from
                )
                if first is not None:
                    raise ratecard.repricing_refused("a booking fee", effective_from, first)
                previous = await conn.fetchval(
                    "SELECT fee_cents FROM billing.booking_fees WHERE effective_from < $1"
                    " ORDER BY effective_from DESC LIMIT 1",
                    effective_from,
                )
                await conn.execute(
                    "INSERT INTO billing.booking_fees (effective_from, fee_cents, set_by) VALUES ($1, $2, $3)"
                    " ON CONFLICT (effective_from) DO UPDATE"
                    " SET fee_cents = EXCLUDED.fee_cents, set_by = EXCLUDED.set_by, created_at = now()",
                    effective_from, fee_cents, set_by,
                )
                await conn.execute(_OUTBOX, events.TOPIC, event(previous or 0))
            return BookingFee.from_row(
                await conn.fetchrow(f"SELECT * FROM ({_FEE_VERSIONS}) v WHERE effective_from = $1", effective_from)
            )

    async def zip_rates(
        self, zip_code: str | None, as_of: dt.datetime, history: bool, after: tuple[str, dt.datetime] | None,
        limit: int,
    ) -> list[ZipRate]:
        """Rate versions by ZIP then effective_from: every version with history, else the one in effect at as_of."""
        async with storage_errors():
            rows = await self._pool.fetch(
                f"SELECT * FROM ({_RATE_VERSIONS}) v"
                " WHERE ($6 OR (effective_from <= $2::timestamptz"
                "              AND (effective_until IS NULL OR effective_until > $2::timestamptz)))"
                " AND ($3::text IS NULL OR (zip, effective_from) > ($3, $4::timestamptz))"
                " ORDER BY zip, effective_from LIMIT $5",
                zip_code, as_of, after[0] if after else None, after[1] if after else None, limit, history,
            )
        return [ZipRate.from_row(r) for r in rows]

    async def booking_fees(self) -> list[BookingFee]:
        async with storage_errors():
            rows = await self._pool.fetch(_FEE_VERSIONS + " ORDER BY effective_from")
        return [BookingFee.from_row(r) for r in rows]

    # ------------------------------------------------------------ rated calls

    async def get_rated_call(self, call_id: str) -> RatedCall | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM billing.rated_calls WHERE call_id = $1", call_id)
        return RatedCall.from_row(row) if row is not None else None

    async def insert_decisions(
        self, calls: Sequence[tuple[str, dt.datetime]],
        decide: Callable[[int, tuple[int, dt.datetime] | None], dict[str, Any] | None],
    ) -> dict[str, RatedCall]:
        """Prices a batch of calls at the rate in effect when each started and stores their decisions with
        their CallRated events, before any money moves, in one transaction of four statements: shared locks on
        its ZIPs (in order, so it cannot deadlock with another batch), each call's rate, the decisions, their
        events. decide(i, (rate_cents, effective_from) or None) returns call i's row, or None to store nothing
        for it. Returns the rows stored by this batch by call id; a call id missing was stored first by a
        concurrent twin."""
        if not calls:
            return {}
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS l(k, o)"
                " ORDER BY o",
                [zip_lock(z) for z in sorted({c[0] for c in calls})],
            )
            rates = await conn.fetch(
                "SELECT q.ord, r.rate_cents, r.effective_from"
                " FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS q(zip, at, ord)"
                " LEFT JOIN LATERAL (SELECT rate_cents, effective_from FROM billing.zip_rates"
                "   WHERE zip = q.zip AND effective_from <= q.at ORDER BY effective_from DESC LIMIT 1) r ON true"
                " ORDER BY q.ord",
                [c[0] for c in calls], [c[1] for c in calls],
            )
            rows, events_of, contractors_of = [], {}, {}
            for i, rate in enumerate(rates):
                row = decide(i, (rate["rate_cents"], rate["effective_from"]) if rate["rate_cents"] is not None
                             else None)
                if row is not None:
                    events_of[row["call_id"]] = row.pop("event")
                    contractors_of[row["call_id"]] = row.pop("contractors", ())
                    rows.append(row)
            if not rows:
                return {}
            # In one global order: twin batches (the same calls in another order) inserting the same keys in
            # their own orders each wait for the other's uncommitted key, a deadlock.
            rows.sort(key=lambda r: r["call_id"])
            # Only what the database chose: the rest of each stored row is the row sent (decoding the decisions
            # and facts back cost billing ~5 % of its CPU per rated call).
            stored = await conn.fetch(
                _unnest_insert("billing.rated_calls", _DECISION_TYPES, "call_id", "RETURNING call_id, decided_at"),
                *_columns(rows, _DECISION_TYPES),
            )
            if not stored:
                return {}
            by_id = {r["call_id"]: r for r in rows}
            mine = [(by_id[s["call_id"]], s["decided_at"]) for s in stored]
            await conn.execute(
                "INSERT INTO billing.outbox (topic, payload) SELECT $1, unnest($2::bytea[])",
                events.TOPIC, [events_of[r["call_id"]] for r, _ in mine],
            )
            await index_calls(conn, [{**r, "contractors": contractors_of[r["call_id"]]} for r, _ in mine])
            return {r["call_id"]: RatedCall.decided(r, decided_at) for r, decided_at in mine}

    async def finish_calls(self, settled: Sequence[tuple[RatedCall, str, int | None, str]],
                           charges: Sequence[dict[str, Any]]) -> dict[str, RatedCall]:
        """Marks a batch of decisions settled and records the charges of the billable ones, in one
        transaction: (the settling row, settled_by, entry_id, captured reservation) per call. Returns every
        call's row as it now stands."""
        ids = [s[0].call_id for s in settled]
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            # Rows locked in call id order first: the join below locks in whatever order its plan reads them,
            # and two twin batches doing that in different orders deadlock.
            await conn.execute("SELECT 1 FROM billing.rated_calls WHERE call_id = ANY($1::text[])"
                               " ORDER BY call_id FOR UPDATE", ids)
            updated = await conn.fetch(
                "UPDATE billing.rated_calls c SET state = 'settled', settled_by = u.how, wallet_entry_id = u.entry,"
                " capture_reservation_id = CASE WHEN u.rid = '' THEN c.capture_reservation_id ELSE u.rid END,"
                " settled_at = now(), last_error = ''"
                " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS u(id, how, entry, rid)"
                " WHERE c.call_id = u.id AND c.state = 'settling' RETURNING c.call_id, c.capture_reservation_id",
                ids, [s[1] for s in settled], [s[2] for s in settled], [s[3] for s in settled],
            )
            # The rows as updated, from the settling rows we hold (not read back: see insert_decisions).
            now = {r["call_id"]: r["capture_reservation_id"] for r in updated}
            rows = {row.call_id: row.settled(entry_id, now[row.call_id])
                    for row, _, entry_id, _ in settled if row.call_id in now}
            mine = sorted((c for c in charges if c["call_id"] in rows), key=lambda c: c["call_id"])
            if mine:
                await conn.execute(_unnest_insert("billing.charges", _CALL_CHARGE_TYPES, "charge_id"),
                                   *_columns(mine, _CALL_CHARGE_TYPES))
            rest = [i for i in ids if i not in rows]
            if rest:  # a twin finished them first
                for r in await conn.fetch("SELECT * FROM billing.rated_calls WHERE call_id = ANY($1::text[])", rest):
                    rows[r["call_id"]] = RatedCall.from_row(r)
            return rows

    async def note_failures(self, failures: Sequence[tuple[str, str]]) -> None:
        """Counts a failed settlement attempt on each of a batch of rated calls: (call_id, error)."""
        if not failures:
            return
        async with storage_errors():
            await self._pool.execute(
                "UPDATE billing.rated_calls c SET attempts = attempts + 1, last_error = left(u.error, 500)"
                " FROM unnest($1::text[], $2::text[]) AS u(id, error) WHERE c.call_id = u.id",
                [f[0] for f in failures], [f[1] for f in failures],
            )

    async def note_failure(self, table: str, key_column: str, key: str, error: str) -> None:
        async with storage_errors():
            await self._pool.execute(
                f"UPDATE billing.{table} SET attempts = attempts + 1, last_error = $2 WHERE {key_column} = $1",
                key, error[:500],
            )

    async def settling(self, older_than_s: float, limit: int) -> Unsettled:
        """Keys of settlements left unfinished (a crash, a wallet outage) for the sweeper to re-drive."""
        async with storage_errors():
            calls = await self._pool.fetch(
                "SELECT call_id FROM billing.rated_calls WHERE state = 'settling'"
                " AND decided_at < now() - make_interval(secs => $1) ORDER BY decided_at LIMIT $2",
                older_than_s, limit,
            )
            bookings = await self._pool.fetch(
                "SELECT booking_id FROM billing.bookings WHERE state = 'settling'"
                " AND recorded_at < now() - make_interval(secs => $1) ORDER BY recorded_at LIMIT $2",
                older_than_s, limit,
            )
            refunds = await self._pool.fetch(
                "SELECT refund_case_id FROM billing.refund_cases WHERE credit_state = 'settling'"
                " AND resolved_at < now() - make_interval(secs => $1) ORDER BY resolved_at LIMIT $2",
                older_than_s, limit,
            )
        return Unsettled([r[0] for r in calls], [r[0] for r in bookings], [r[0] for r in refunds])

    # ------------------------------------------------------------ bookings

    async def get_booking(self, booking_id: str) -> Booking | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM billing.bookings WHERE booking_id = $1", booking_id)
        return Booking.from_row(row) if row is not None else None

    async def insert_booking(
        self, scheduled_at: dt.datetime, decide: Callable[[int, dt.datetime], dict[str, Any]]
    ) -> Booking | None:
        """Stores the booking priced at the fee in effect at scheduled_at (decide(fee_cents, effective_from)
        builds the row); None when it was stored first."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", FEE_LOCK)
            fee = await conn.fetchrow(_FEE_AT, scheduled_at)
            row = decide(fee["fee_cents"], fee["effective_from"])
            cols = list(row)
            stored = await conn.fetchrow(
                f"INSERT INTO billing.bookings ({', '.join(cols)})"
                f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})"
                " ON CONFLICT (booking_id) DO NOTHING RETURNING *",
                *row.values(),
            )
        return Booking.from_row(stored) if stored is not None else None

    async def finish_booking(self, booking_id: str, entry_id: int, charge: dict[str, Any]) -> Booking:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE billing.bookings SET state = 'settled', wallet_entry_id = $2, settled_at = now(),"
                " last_error = '' WHERE booking_id = $1 AND state = 'settling' RETURNING *",
                booking_id, entry_id,
            )
            if row is not None:
                await self._insert_charge(conn, charge)
            row = row or await conn.fetchrow("SELECT * FROM billing.bookings WHERE booking_id = $1", booking_id)
        return Booking.from_row(row)

    async def bookings_of_call(self, call_id: str) -> list[Booking]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM billing.bookings WHERE call_id = $1 ORDER BY scheduled_at, booking_id", call_id
            )
        return [Booking.from_row(r) for r in rows]

    # ------------------------------------------------------------ charges

    @staticmethod
    async def _insert_charge(conn: asyncpg.Connection, charge: dict[str, Any]) -> None:
        cols = list(charge)
        await conn.execute(
            f"INSERT INTO billing.charges ({', '.join(cols)})"
            f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))}) ON CONFLICT (charge_id) DO NOTHING",
            *charge.values(),
        )

    async def get_charge(self, charge_id: str) -> Charge | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM billing.charges WHERE charge_id = $1", charge_id)
        return Charge.from_row(row) if row is not None else None

    async def charges_of_call(self, call_id: str) -> list[Charge]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM billing.charges WHERE call_id = $1 ORDER BY charged_at, charge_id", call_id
            )
        return [Charge.from_row(r) for r in rows]

    async def charges_of_contractor(
        self, contractor_id: str, before: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Charge]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM billing.charges WHERE contractor_id = $1"
                " AND ($2::timestamptz IS NULL OR (charged_at, charge_id) < ($2, $3::text))"
                " ORDER BY charged_at DESC, charge_id DESC LIMIT $4",
                contractor_id, before[0] if before else None, before[1] if before else None, limit,
            )
        return [Charge.from_row(r) for r in rows]

    async def rated_calls_by_id(self, call_ids: Sequence[str]) -> dict[str, RatedCall]:
        return {r.call_id: r for r in await self.rated_calls(call_ids)}

    async def rated_calls(self, call_ids: Sequence[str]) -> list[RatedCall]:
        async with storage_errors():
            rows = await self._pool.fetch("SELECT * FROM billing.rated_calls WHERE call_id = ANY($1::text[])",
                                          list(call_ids))
        return [RatedCall.from_row(r) for r in rows]

    # ------------------------------------------------------------ refund cases

    async def get_case(self, refund_case_id: str) -> RefundCase | None:
        async with storage_errors():
            return _case(await self._pool.fetchrow(
                "SELECT * FROM billing.refund_cases WHERE refund_case_id = $1", refund_case_id
            ))

    async def case_by_key(self, idempotency_key: str) -> RefundCase | None:
        async with storage_errors():
            return _case(await self._pool.fetchrow(
                "SELECT * FROM billing.refund_cases WHERE idempotency_key = $1", idempotency_key
            ))

    async def live_case(self, charge_id: str) -> RefundCase | None:
        async with storage_errors():
            return _case(await self._pool.fetchrow(
                "SELECT * FROM billing.refund_cases WHERE charge_id = $1 AND state IN ('pending_review', 'approved')",
                charge_id,
            ))

    async def insert_case(self, case: dict[str, Any]) -> RefundCase | None:
        """None when the key or the charge's one live case was taken first by a concurrent request."""
        cols = list(case)
        try:
            async with storage_errors():
                return _case(await self._pool.fetchrow(
                    f"INSERT INTO billing.refund_cases ({', '.join(cols)})"
                    f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))}) RETURNING *",
                    *case.values(),
                ))
        except asyncpg.UniqueViolationError:
            return None

    async def insert_case_within_allowance(self, case: dict[str, Any], held: dict[str, Any], allowance: int,
                                           window_days: int) -> RefundCase | None:
        """Inserts `case` (an automatic approval that counts) while the contractor has had fewer than
        `allowance` such approvals in the last `window_days`, else `held` (the same request, left for an
        operator). The contractor's advisory lock makes the count and the insert one step, so concurrent
        requests cannot each take the last approval. None as insert_case."""
        try:
            async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('refund-allowance:' || $1, 0))",
                                   case["contractor_id"])
                used = await conn.fetchval(
                    "SELECT count(*) FROM billing.refund_cases WHERE contractor_id = $1 AND counts_as_auto_approval"
                    " AND requested_at > now() - make_interval(days => $2)",
                    case["contractor_id"], window_days,
                )
                row = {**case, "counts_as_auto_approval": True} if used < allowance else held
                cols = list(row)
                return _case(await conn.fetchrow(
                    f"INSERT INTO billing.refund_cases ({', '.join(cols)})"
                    f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))}) RETURNING *",
                    *row.values(),
                ))
        except asyncpg.UniqueViolationError:
            return None

    async def resolve_case(self, refund_case_id: str, state: str, reviewer: str, note: str,
                           amount_cents: int | None = None) -> RefundCase | None:
        """Moves a pending case to its verdict (an approval in part lowers amount_cents, keeping what was asked in
        requested_cents); None when it was no longer pending."""
        credit = "settling" if state == "approved" else "none"
        async with storage_errors():
            return _case(await self._pool.fetchrow(
                "UPDATE billing.refund_cases SET state = $2, reviewer = $3, resolution_note = $4, credit_state = $5,"
                " resolved_at = now(), requested_cents = coalesce(requested_cents, amount_cents),"
                " amount_cents = coalesce($6, amount_cents)"
                " WHERE refund_case_id = $1 AND state = 'pending_review' RETURNING *",
                refund_case_id, state, reviewer, note, credit, amount_cents,
            ))

    async def first_approval(self, refund_case_id: str, reviewer: str, amount_cents: int) -> RefundCase | None:
        """Records the first of two approvals; None when the case is no longer pending or already has one."""
        async with storage_errors():
            return _case(await self._pool.fetchrow(
                "UPDATE billing.refund_cases SET first_approver = $2, first_approved_at = now(),"
                " first_approved_cents = $3 WHERE refund_case_id = $1 AND state = 'pending_review'"
                " AND first_approver = '' RETURNING *",
                refund_case_id, reviewer, amount_cents,
            ))

    async def finish_refund(self, refund_case_id: str, entry_id: int, event: bytes | None) -> RefundCase:
        """Records the wallet's REFUND entry, the charge's refunded amount and (for spam) the block event."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE billing.refund_cases SET credit_state = 'settled', refund_entry_id = $2, last_error = ''"
                " WHERE refund_case_id = $1 AND credit_state = 'settling' RETURNING *",
                refund_case_id, entry_id,
            )
            if row is None:  # credited already (a sweep and a retry raced): the case as it stands
                row = await conn.fetchrow(
                    "SELECT * FROM billing.refund_cases WHERE refund_case_id = $1", refund_case_id
                )
                return RefundCase.from_row(row)
            await conn.execute(
                "UPDATE billing.charges SET refunded_cents = refunded_cents + $2 WHERE charge_id = $1",
                row["charge_id"], row["amount_cents"],
            )
            if event is not None:
                await conn.execute(_OUTBOX, events.TOPIC, event)
            return RefundCase.from_row(row)

    async def cases(
        self, state: str | None, contractor_id: str | None, charge_ids: Sequence[str] | None,
        before: tuple[dt.datetime, str] | None, limit: int,
    ) -> list[RefundCase]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM billing.refund_cases WHERE ($1::text IS NULL OR state = $1)"
                " AND ($2::text IS NULL OR contractor_id = $2)"
                " AND ($3::text[] IS NULL OR charge_id = ANY($3))"
                " AND ($4::timestamptz IS NULL OR (requested_at, refund_case_id) < ($4, $5::text))"
                " ORDER BY requested_at DESC, refund_case_id DESC LIMIT $6",
                state, contractor_id, list(charge_ids) if charge_ids is not None else None,
                before[0] if before else None, before[1] if before else None, limit,
            )
        return [RefundCase.from_row(r) for r in rows]

    async def latest_cases(self, charge_ids: Sequence[str]) -> dict[str, RefundCase]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT DISTINCT ON (charge_id) * FROM billing.refund_cases WHERE charge_id = ANY($1::text[])"
                " ORDER BY charge_id, requested_at DESC, refund_case_id DESC",
                list(charge_ids),
            )
        return {r["charge_id"]: RefundCase.from_row(r) for r in rows}


def _case(row: asyncpg.Record | None) -> RefundCase | None:
    return RefundCase.from_row(row) if row is not None else None
