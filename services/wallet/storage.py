"""All of the wallet's SQL. Balance changes are group-committed: a batch is one statement, one commit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg

from services.runtime.db import storage_errors
from services.runtime.group_commit import GroupCommitter
from services.wallet.forecast import Day
from services.wallet.ledger import EntryOp, SettleOp
from services.wallet.records import (
    DONE,
    Entry,
    LedgerSummary,
    Outcome,
    Posted,
    Reservation,
    Reserved,
    Routability,
    Violation,
    Wallet,
)

SCHEMA = "wallet"
OUTBOX_TABLE = "wallet.outbox"

# Plain charges set-based, the rest through wallet.post_entry item by item (migrations/R__functions.sql); a row
# per item, in order.
_POST_BATCH = "SELECT * FROM wallet.post_entries($1, $2, $3, $4, $5, $6, $7, $8, $9)"

# The common cases set-based, the rest through wallet.settle_call item by item (migrations/R__functions.sql); a
# row per item, by ord.
_SETTLE_BATCH = "SELECT * FROM wallet.settle_calls($1, $2, $3, $4, $5, $6, $7, $8, $9)"

_WALLET = """
SELECT w.*, coalesce(h.held, 0) AS reserved_cents, coalesce(ct.email, '') AS contact_email,
       coalesce(a.enabled, false) AS auto_enabled, coalesce(a.threshold_cents, 0) AS auto_threshold_cents,
       coalesce(a.amount_cents, 0) AS auto_amount_cents, coalesce(a.max_per_day_cents, 0) AS auto_max_per_day_cents,
       coalesce(a.max_per_hour, 0) AS auto_max_per_hour, coalesce(a.card_brand, '') AS auto_card_brand,
       coalesce(a.card_last4, '') AS auto_card_last4, a.consented_at AS auto_consented_at,
       coalesce(a.consecutive_declines, 0) AS auto_consecutive_declines,
       coalesce(a.disabled_reason, '') AS auto_disabled_reason
FROM wallet.wallets w
LEFT JOIN wallet.contacts ct ON ct.contractor_id = w.contractor_id
LEFT JOIN LATERAL (
    SELECT sum(amount_cents)::bigint AS held FROM wallet.reservations
    WHERE contractor_id = w.contractor_id AND state = 'open' AND expires_at > now()
) h ON true
LEFT JOIN wallet.auto_top_ups a ON a.contractor_id = w.contractor_id
"""

_ENTRY_COLUMNS = (
    "entry_id, contractor_id, kind, amount_cents, balance_after_cents, idempotency_key, reference, description,"
    " refund_of_entry_id, reservation_id, created_at, credit_source"
)


class WalletStore:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256) -> None:
        self._pool = pool
        # One batch in flight: the posts arriving during its commit wait and go together in the next. Measured
        # (bench/wallet_charge.py) about twice the posts per commit of two in flight, and less CPU per post in
        # both this process and PostgreSQL; the Charge path is CPU-bound, not commit-latency-bound.
        self._committer: GroupCommitter[EntryOp, Posted] = GroupCommitter(
            self._post_batch, max_batch=max_batch, max_in_flight=1
        )

    async def post(self, op: EntryOp) -> Posted:
        """Appends op's entry exactly once per idempotency key, sharing a commit with concurrent posts."""
        return await self._committer.submit(op)

    async def _post_batch(self, ops: list[EntryOp]) -> list[Posted]:
        # Wallets are locked in one global order (contractor id), so concurrent batches cannot deadlock.
        order = sorted(range(len(ops)), key=lambda i: ops[i].contractor_id)
        ranked = [ops[i] for i in order]
        async with storage_errors(), self._pool.acquire() as conn:
            rows = await conn.fetch(
                _POST_BATCH,
                [o.contractor_id for o in ranked],
                [o.kind for o in ranked],
                [o.amount_cents for o in ranked],
                [o.idempotency_key for o in ranked],
                [o.request_hash for o in ranked],
                [o.reference for o in ranked],
                [o.description for o in ranked],
                [o.refund_of_entry_id for o in ranked],
                [uuid.UUID(o.reservation_id) if o.reservation_id else None for o in ranked],
            )
        results: list[Posted | None] = [None] * len(ops)
        for i, row in zip(order, rows, strict=True):
            results[i] = Posted.from_row(row)
        return results  # type: ignore[return-value]

    async def payer_reservations(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The reservation id of each (contractor, call) pair that has one."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT r.contractor_id, r.call_id, r.reservation_id FROM wallet.reservations r"
                " JOIN unnest($1::text[], $2::text[]) AS p(c, call) ON r.contractor_id = p.c AND r.call_id = p.call",
                [p[0] for p in pairs], [p[1] for p in pairs],
            )
        return {(r["contractor_id"], r["call_id"]): str(r["reservation_id"]) for r in rows}

    async def settle_calls(self, items: Sequence[SettleOp]) -> list[Posted]:
        """Settles every item in one statement and one commit; a row per item, in order. Payers' wallets are
        locked in contractor order, as _post_batch does, and the per-item path takes the items in that order."""
        order = sorted(range(len(items)), key=lambda i: (items[i].payer_contractor_id, items[i].call_id))
        ranked = [items[i] for i in order]
        async with storage_errors(), self._pool.acquire() as conn:
            rows = await conn.fetch(
                _SETTLE_BATCH,
                [o.call_id for o in ranked],
                [o.payer_contractor_id for o in ranked],
                [o.amount_cents for o in ranked],
                [o.idempotency_key for o in ranked],
                [o.charge_hash for o in ranked],
                [o.reference for o in ranked],
                [o.description for o in ranked],
                [uuid.UUID(o.reservation_id) if o.reservation_id else None for o in ranked],
                [o.capture_hash for o in ranked],
            )
        results: list[Posted | None] = [None] * len(items)
        for i, row in zip(order, rows, strict=True):
            results[i] = Posted.from_row(row)
        return results  # type: ignore[return-value]

    async def reservation_owner(self, reservation_id: str) -> str | None:
        async with storage_errors():
            return await self._pool.fetchval(
                "SELECT contractor_id FROM wallet.reservations WHERE reservation_id = $1", uuid.UUID(reservation_id)
            )

    async def entry_owner(self, entry_id: int) -> str | None:
        async with storage_errors():
            return await self._pool.fetchval("SELECT contractor_id FROM wallet.entries WHERE entry_id = $1", entry_id)

    async def reserve(
        self, contractor_id: str, call_id: str, amount_cents: int, expires_in_s: int
    ) -> Reserved:
        async with storage_errors():
            row = await self._pool.fetchrow(
                "SELECT * FROM wallet.reserve($1, $2, $3, $4, $5)",
                contractor_id, call_id, amount_cents, expires_in_s, uuid.uuid4(),
            )
        outcome = Outcome(row["outcome"])
        held = outcome in DONE
        reservation = Reservation.from_row(row, contractor_id=contractor_id, call_id=call_id) if held else None
        return Reserved(outcome, reservation, row["available_cents"], row["balance_cents"],
                        row["pause_threshold_cents"])

    async def release(self, reservation_id: str) -> Reservation | None:
        """Frees an open reservation; returns the reservation as it now stands (None if unknown). One round
        trip when it was open."""
        rid = uuid.UUID(reservation_id)
        async with storage_errors():
            released = await self._pool.fetchrow(
                "UPDATE wallet.reservations SET state = 'released', settled_at = now()"
                " WHERE reservation_id = $1 AND state = 'open' RETURNING *, now() AS now",
                rid,
            )
            if released is not None:
                return Reservation.from_row(released)
            return await self.get_reservation(reservation_id)

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        async with storage_errors():
            row = await self._pool.fetchrow(
                "SELECT *, now() AS now FROM wallet.reservations WHERE reservation_id = $1", uuid.UUID(reservation_id)
            )
        return Reservation.from_row(row) if row is not None else None

    async def call_reservations(self, call_id: str) -> list[Reservation]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT *, now() AS now FROM wallet.reservations WHERE call_id = $1"
                " ORDER BY created_at, reservation_id", call_id
            )
        return [Reservation.from_row(r) for r in rows]

    async def get_wallet(self, contractor_id: str) -> Wallet | None:
        async with storage_errors():
            row = await self._pool.fetchrow(_WALLET + " WHERE w.contractor_id = $1", contractor_id)
        return Wallet.from_row(row) if row is not None else None

    async def count_paused(self) -> int:
        """Contractors paused for low balance, for the wallet.paused_contractors gauge."""
        async with storage_errors():
            return int(await self._pool.fetchval("SELECT count(*) FROM wallet.wallets WHERE paused"))

    async def list_entries(self, contractor_id: str, before_entry_id: int | None, limit: int) -> list[Entry]:
        async with storage_errors():
            rows = await self._pool.fetch(
                f"SELECT {_ENTRY_COLUMNS} FROM wallet.entries"
                " WHERE contractor_id = $1 AND ($2::bigint IS NULL OR entry_id < $2)"
                " ORDER BY entry_id DESC LIMIT $3",
                contractor_id, before_entry_id, limit,
            )
        return [Entry.from_row(r) for r in rows]

    async def routability(self, contractor_ids: Sequence[str]) -> list[Routability]:
        """One answer per asked id, in order."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT ask.id AS asked_id, w.contractor_id, w.balance_cents, w.paused, w.pause_threshold_cents,"
                "       w.balance_cents - coalesce(h.held, 0) AS available_cents"
                " FROM unnest($1::text[]) WITH ORDINALITY AS ask(id, ord)"
                " LEFT JOIN wallet.wallets w ON w.contractor_id = ask.id"
                " LEFT JOIN LATERAL (SELECT sum(amount_cents)::bigint AS held FROM wallet.reservations"
                "    WHERE contractor_id = ask.id AND state = 'open' AND expires_at > now()) h ON true"
                " ORDER BY ask.ord",
                list(contractor_ids),
            )
        return [Routability.from_row(r) for r in rows]

    async def set_pause_threshold(self, contractor_id: str, threshold_cents: int) -> Wallet:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT wallet.set_pause_threshold($1, $2)", contractor_id, threshold_cents)
            return Wallet.from_row(await conn.fetchrow(_WALLET + " WHERE w.contractor_id = $1", contractor_id))

    async def set_low_balance_alert(
        self, contractor_id: str, threshold_cents: int, email: str
    ) -> Wallet | None:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT (wallet.set_low_balance_alert($1, $2, $3)).contractor_id", contractor_id, threshold_cents, email
            )
            if found is None:
                return None
            return Wallet.from_row(await conn.fetchrow(_WALLET + " WHERE w.contractor_id = $1", contractor_id))

    async def set_contact_email(self, contractor_id: str, email: str) -> Wallet | None:
        """The wallet after the change; None when there is no wallet. An empty email removes the address."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM wallet.wallets WHERE contractor_id = $1", contractor_id) is None:
                return None
            if email:
                await conn.execute(
                    "INSERT INTO wallet.contacts (contractor_id, email) VALUES ($1, $2)"
                    " ON CONFLICT (contractor_id) DO UPDATE SET email = excluded.email, updated_at = now()",
                    contractor_id, email,
                )
            else:
                await conn.execute("DELETE FROM wallet.contacts WHERE contractor_id = $1", contractor_id)
            return Wallet.from_row(await conn.fetchrow(_WALLET + " WHERE w.contractor_id = $1", contractor_id))

    async def contractors_by_email(self, email: str) -> list[str]:
        """By contact address; by the alert's address for wallets that have no contact address."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT contractor_id FROM wallet.contacts WHERE lower(email) = lower($1)"
                " UNION SELECT w.contractor_id FROM wallet.wallets w"
                "  WHERE lower(w.alert_email) = lower($1) AND w.alert_email <> ''"
                "    AND NOT EXISTS (SELECT 1 FROM wallet.contacts c WHERE c.contractor_id = w.contractor_id)"
                " ORDER BY 1",
                email,
            )
        return [r["contractor_id"] for r in rows]

    async def daily_activity(self, contractor_id: str, since: dt.datetime) -> list[Day]:
        """Per UTC day from `since` that has entries: debits (spent, count), refunds and top-ups, as positive
        figures."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT (created_at AT TIME ZONE 'UTC')::date AS day,"
                "  coalesce(sum(-amount_cents) FILTER (WHERE kind IN ('capture', 'charge')), 0)::bigint AS spent,"
                "  count(*) FILTER (WHERE kind IN ('capture', 'charge'))::int AS debits,"
                "  coalesce(sum(amount_cents) FILTER (WHERE kind = 'refund'), 0)::bigint AS refunded,"
                "  coalesce(sum(amount_cents) FILTER (WHERE kind = 'top_up'), 0)::bigint AS topped_up"
                " FROM wallet.entries WHERE contractor_id = $1 AND created_at >= $2"
                " GROUP BY 1 ORDER BY 1",
                contractor_id, since,
            )
        return [Day(r["day"], r["spent"], r["debits"], r["refunded"], r["topped_up"]) for r in rows]

    async def now(self) -> dt.datetime:
        async with storage_errors():
            return await self._pool.fetchval("SELECT now()")


# Each check returns the rows that break one invariant; reconcile passes when all are empty.
RECONCILE_CHECKS = {
    "balance differs from the sum of its ledger": """
        SELECT w.contractor_id, w.balance_cents, coalesce(sum(e.amount_cents), 0) AS ledger_sum_cents
        FROM wallet.wallets w LEFT JOIN wallet.entries e ON e.contractor_id = w.contractor_id
        GROUP BY w.contractor_id, w.balance_cents
        HAVING w.balance_cents <> coalesce(sum(e.amount_cents), 0)""",
    "an entry's running balance is not the sum of the entries up to it": """
        SELECT contractor_id, entry_id, balance_after_cents, running_cents FROM (
            SELECT contractor_id, entry_id, balance_after_cents,
                   sum(amount_cents) OVER (PARTITION BY contractor_id ORDER BY entry_id) AS running_cents
            FROM wallet.entries) x
        WHERE balance_after_cents <> running_cents""",
    "a reservation captured more than once, or captured without its entry": """
        SELECT r.contractor_id, r.reservation_id, count(e.entry_id) AS capture_entries
        FROM wallet.reservations r LEFT JOIN wallet.entries e ON e.reservation_id = r.reservation_id
        GROUP BY r.contractor_id, r.reservation_id, r.state
        HAVING count(e.entry_id) > 1 OR (r.state = 'captured') <> (count(e.entry_id) = 1)""",
    "a charge refunded more than once or for more than it cost": """
        SELECT c.contractor_id, c.entry_id, -c.amount_cents AS charged_cents,
               sum(f.amount_cents) AS refunded_cents, count(*) AS refunds
        FROM wallet.entries c JOIN wallet.entries f ON f.refund_of_entry_id = c.entry_id
        GROUP BY c.contractor_id, c.entry_id, c.amount_cents
        HAVING count(*) > 1 OR sum(f.amount_cents) > -c.amount_cents""",
    "paused flag disagrees with balance and threshold": """
        SELECT contractor_id, balance_cents, pause_threshold_cents, paused FROM wallet.wallets
        WHERE paused <> (balance_cents < pause_threshold_cents)""",
    # Money in (issue 14): a credit is a verified card payment or an operator's with a reason, nothing else.
    "a credit that is neither a verified card payment nor an operator's credit with a reason": """
        SELECT e.contractor_id, e.entry_id, e.amount_cents, e.reference, e.credit_source, e.description
        FROM wallet.entries e
        LEFT JOIN wallet.top_ups t ON t.entry_id = e.entry_id
        WHERE e.kind = 'top_up' AND e.credit_source IS DISTINCT FROM 'legacy'
          AND NOT (e.credit_source = 'operator' AND btrim(e.description) <> '' AND e.reference NOT LIKE 'pi\\_%')
          AND NOT (e.credit_source = 'card' AND t.top_up_id IS NOT NULL AND t.state = 'credited'
                   AND t.payment_intent_id = e.reference AND t.credited_cents = e.amount_cents
                   AND t.contractor_id = e.contractor_id)""",
    "a PaymentIntent credited more than once": """
        SELECT reference AS payment_intent_id, count(*) AS credits, sum(amount_cents) AS credited_cents
        FROM wallet.entries WHERE kind = 'top_up' AND credit_source = 'card'
        GROUP BY reference HAVING count(*) > 1""",
    "a top-up recorded as credited without its credit": """
        SELECT t.top_up_id, t.contractor_id, t.payment_intent_id, t.entry_id
        FROM wallet.top_ups t LEFT JOIN wallet.entries e ON e.entry_id = t.entry_id
        WHERE t.state = 'credited' AND (e.entry_id IS NULL OR e.reference <> t.payment_intent_id
                                        OR e.contractor_id <> t.contractor_id)""",
}


async def has_schema(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT to_regclass('wallet.wallets')") is not None


async def ledger_summary(conn: asyncpg.Connection) -> LedgerSummary:
    return LedgerSummary(
        wallets=await conn.fetchval("SELECT count(*) FROM wallet.wallets"),
        entries=await conn.fetchval("SELECT count(*) FROM wallet.entries"),
        legacy_credits=await conn.fetchval(
            "SELECT count(*) FROM wallet.entries WHERE kind = 'top_up' AND credit_source = 'legacy'"),
    )


async def reconcile(conn: asyncpg.Connection) -> dict[str, list[Violation]]:
    """Runs every invariant check in one snapshot, so concurrent traffic cannot produce a false alarm."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return {name: [Violation(dict(r)) for r in await conn.fetch(sql)] for name, sql in RECONCILE_CHECKS.items()}
