"""All of routing's SQL: claims, profiles, the rate-card projection, the blocklist, routing steps, consumed
billing events and the pause-threshold outbox."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from services.routing import claims as rules
from services.routing.claims import Slot
from services.routing.records import BlockedCaller, MissedStep, StoredClaim, StoredProfile
from services.routing.schedule import Profile, Window
from services.runtime.db import storage_errors
from services.runtime.errors import FailedPrecondition, NotFound
from services.runtime.pause_line import pause_threshold_cents

SCHEMA = "routing"
DEFAULT_BOOKING_FEE_CENTS = 2500  # billing's fee until one is first set (GetRateCardResponse.booking_fee)

_RATE_NOW = ("(SELECT r.rate_cents FROM routing.zip_rates r WHERE r.zip = {zip} AND r.effective_from <= now()"
             " ORDER BY r.effective_from DESC LIMIT 1)")
_CLAIM_COLUMNS = ("c.zip, c.contractor_id, c.position, c.backup_rank, c.claimed_at, "
                  + _RATE_NOW.format(zip="c.zip") + " AS rate_cents")
_PROFILE_COLUMNS = ("mode, time_zone, weekly_hours, daily_max_connected_calls, monthly_max_connected_calls,"
                    " max_concurrent_calls")


@dataclasses.dataclass(frozen=True)
class ZipView:
    """Everything RouteCall needs about a ZIP, loaded in one query and cached."""

    rate_cents: int | None
    # The ZIP's claims in cascade order, each with its contractor's profile.
    claims: list[tuple[Slot, Profile]]
    # When a scheduled rate takes over (the cached rate is stale from then on).
    next_rate_change_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class BillingUpdate:
    """One billing event as routing applies it (the consumer turns the proto into this)."""

    kind: str  # zip_rate, booking_fee, block, call_rated, ignored
    event_id: int
    zip: str = ""
    cents: int = 0
    # The rate's or fee's effective_from; a rated call's started_at.
    effective_from: dt.datetime | None = None
    caller_number: str = ""
    refund_case_id: str = ""
    actor: str = ""
    note: str = ""
    call_id: str = ""
    payer_contractor_id: str = ""
    rung_contractor_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ClaimChange:
    claim: StoredClaim
    zip_claims: list[StoredClaim]
    pause_threshold_cents: int


def profile_from(contractor_id: str, row: asyncpg.Record | None) -> Profile:
    if row is None or row["mode"] is None:
        return Profile(contractor_id)
    hours = row["weekly_hours"]
    hours = json.loads(hours) if isinstance(hours, str) else hours
    return Profile(
        contractor_id, row["mode"], row["time_zone"], tuple(Window(*w) for w in hours),
        row["daily_max_connected_calls"], row["monthly_max_connected_calls"], row["max_concurrent_calls"],
    )


class RoutingStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ------------------------------------------------------------ the hot path's one query

    async def zip_view(self, zip_code: str) -> ZipView:
        """One round trip: the rate row always, joined to each claim (none: one row without a contractor)."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT q.rate_cents, q.next_change, c.contractor_id, c.position, c.backup_rank, p.mode, p.time_zone,"
                " p.weekly_hours, p.daily_max_connected_calls, p.monthly_max_connected_calls, p.max_concurrent_calls"
                " FROM (SELECT " + _RATE_NOW.format(zip="$1") + " AS rate_cents,"
                "   (SELECT min(effective_from) FROM routing.zip_rates WHERE zip = $1 AND effective_from > now())"
                "   AS next_change) q"
                " LEFT JOIN routing.claims c ON c.zip = $1"
                " LEFT JOIN routing.profiles p ON p.contractor_id = c.contractor_id"
                " ORDER BY c.backup_rank",
                zip_code,
            )
        claims = [(Slot(r["contractor_id"], r["position"], r["backup_rank"]), profile_from(r["contractor_id"], r))
                  for r in rows if r["contractor_id"] is not None]
        return ZipView(rows[0]["rate_cents"], claims, rows[0]["next_change"])

    # ------------------------------------------------------------ rate card projection

    async def current_rate(self, zip_code: str) -> int | None:
        async with storage_errors():
            return await self._pool.fetchval("SELECT " + _RATE_NOW.format(zip="$1"), zip_code)

    async def store_rate_card(self, rates: Sequence[tuple[str, dt.datetime, int]],
                              fees: Sequence[tuple[dt.datetime, int]]) -> None:
        """Versions learned from GetRateCard; the events stream stays the authority for later changes."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO routing.zip_rates (zip, effective_from, rate_cents) VALUES ($1, $2, $3)"
                " ON CONFLICT (zip, effective_from) DO NOTHING", rates)
            await conn.executemany(
                "INSERT INTO routing.booking_fees (effective_from, fee_cents) VALUES ($1, $2)"
                " ON CONFLICT (effective_from) DO NOTHING", fees)

    async def resync_rate_card(self, rates: Sequence[tuple[str, dt.datetime, int]],
                               fees: Sequence[tuple[dt.datetime, int]], cause: str) -> int:
        """Billing's whole rate card, read after events may have been lost: every version routing lacked or
        held at another figure is written, and the contractors it concerns get their threshold pushed again,
        as the lost event would have done. Returns how many versions changed."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            changed = await conn.fetch(
                "INSERT INTO routing.zip_rates (zip, effective_from, rate_cents)"
                " SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[])"
                " ON CONFLICT (zip, effective_from) DO UPDATE SET rate_cents = EXCLUDED.rate_cents, heard_at = now()"
                " WHERE routing.zip_rates.rate_cents <> EXCLUDED.rate_cents RETURNING zip, effective_from",
                [r[0] for r in rates], [r[1] for r in rates], [r[2] for r in rates])
            if changed:
                await conn.execute(
                    "INSERT INTO routing.threshold_outbox (contractor_id, not_before, cause)"
                    " SELECT c.contractor_id, greatest(now(), u.at), $3 || ' (rate of ' || u.zip || ')'"
                    " FROM routing.claims c JOIN unnest($1::text[], $2::timestamptz[]) AS u(zip, at) ON c.zip = u.zip",
                    [r["zip"] for r in changed], [r["effective_from"] for r in changed], cause)
            fee_changed = await conn.fetch(
                "INSERT INTO routing.booking_fees (effective_from, fee_cents)"
                " SELECT * FROM unnest($1::timestamptz[], $2::bigint[])"
                " ON CONFLICT (effective_from) DO UPDATE SET fee_cents = EXCLUDED.fee_cents, heard_at = now()"
                " WHERE routing.booking_fees.fee_cents <> EXCLUDED.fee_cents RETURNING effective_from",
                [f[0] for f in fees], [f[1] for f in fees])
            if fee_changed:
                await conn.execute(
                    "INSERT INTO routing.threshold_outbox (contractor_id, not_before, cause)"
                    " SELECT p.contractor_id, greatest(now(), u.at), $2 || ' (booking fee)'"
                    " FROM routing.profiles p CROSS JOIN unnest($1::timestamptz[]) AS u(at) WHERE p.mode = 'ai_agent'",
                    [r["effective_from"] for r in fee_changed], cause)
        return len(changed) + len(fee_changed)

    # ------------------------------------------------------------ claims

    async def claim(self, contractor_id: str, zip_code: str, position: str, backup_rank: int,
                    max_backups: int) -> ClaimChange:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            current = await self._lock_zip(conn, zip_code)
            if await conn.fetchval("SELECT " + _RATE_NOW.format(zip="$1"), zip_code) is None:
                raise unpriced(zip_code)
            slots = rules.apply_claim(current, contractor_id, position, backup_rank, max_backups)
            changed = slots != current
            if changed:
                await self._write_slots(conn, zip_code, current, slots)
            threshold = await self._recompute_threshold(conn, contractor_id, f"claim {zip_code}", changed)
            zip_claims = await self._zip_claims(conn, zip_code)
        mine = next(r for r in zip_claims if r.contractor_id == contractor_id)
        return ClaimChange(mine, zip_claims, threshold)

    async def release(self, contractor_id: str, zip_code: str) -> ClaimChange:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            current = await self._lock_zip(conn, zip_code)
            before = await self._zip_claims(conn, zip_code)
            mine = next((r for r in before if r.contractor_id == contractor_id), None)
            if mine is None:
                raise NotFound(f"contractor {contractor_id!r} has no claim on ZIP {zip_code}", reason="NO_CLAIM")
            await self._write_slots(conn, zip_code, current, rules.release_claim(current, contractor_id))
            threshold = await self._recompute_threshold(conn, contractor_id, f"release {zip_code}", True)
        return ClaimChange(mine, [], threshold)

    async def _lock_zip(self, conn: asyncpg.Connection, zip_code: str) -> list[Slot]:
        # Claims of one ZIP change one transaction at a time, so slots are computed from what is there.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "routing.zip:" + zip_code)
        rows = await conn.fetch(
            "SELECT contractor_id, position, backup_rank FROM routing.claims WHERE zip = $1", zip_code)
        return rules.cascade_order([Slot(r["contractor_id"], r["position"], r["backup_rank"]) for r in rows])

    async def _write_slots(self, conn: asyncpg.Connection, zip_code: str, before: list[Slot],
                           after: list[Slot]) -> None:
        kept = {s.contractor_id for s in after}
        gone = [s.contractor_id for s in before if s.contractor_id not in kept]
        if gone:
            await conn.execute("DELETE FROM routing.claims WHERE zip = $1 AND contractor_id = ANY($2::text[])",
                               zip_code, gone)
        for s in after:
            if s not in before:
                await conn.execute(
                    "INSERT INTO routing.claims (zip, contractor_id, position, backup_rank) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (zip, contractor_id) DO UPDATE SET position = $3, backup_rank = $4",
                    zip_code, s.contractor_id, s.position, s.backup_rank)

    async def _zip_claims(self, conn: asyncpg.Connection, zip_code: str) -> list[StoredClaim]:
        rows = await conn.fetch(
            f"SELECT {_CLAIM_COLUMNS} FROM routing.claims c WHERE c.zip = $1 ORDER BY c.backup_rank", zip_code)
        return [StoredClaim.from_row(r) for r in rows]

    async def claims_of_contractor(self, contractor_id: str, after_zip: str, limit: int) -> list[StoredClaim]:
        async with storage_errors():
            rows = await self._pool.fetch(
                f"SELECT {_CLAIM_COLUMNS} FROM routing.claims c WHERE c.contractor_id = $1 AND c.zip > $2"
                " ORDER BY c.zip LIMIT $3", contractor_id, after_zip, limit)
        return [StoredClaim.from_row(r) for r in rows]

    async def claims_of_zip(self, zip_code: str) -> list[StoredClaim]:
        async with storage_errors(), self._pool.acquire() as conn:
            return await self._zip_claims(conn, zip_code)

    # ------------------------------------------------------------ profiles and pause thresholds

    async def claimed_zips(self, contractor_id: str) -> list[str]:
        async with storage_errors():
            rows = await self._pool.fetch("SELECT zip FROM routing.claims WHERE contractor_id = $1", contractor_id)
        return [r["zip"] for r in rows]

    async def update_profile(self, contractor_id: str, **columns: object) -> StoredProfile:
        """Sets the given profile columns (creating the profile); a mode change re-queues the threshold push."""
        names = list(columns)
        assignments = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO routing.profiles (contractor_id) VALUES ($1) ON CONFLICT DO NOTHING",
                               contractor_id)
            old_mode = await conn.fetchval(
                "SELECT mode FROM routing.profiles WHERE contractor_id = $1 FOR UPDATE", contractor_id)
            await conn.execute(
                f"UPDATE routing.profiles SET {assignments}, updated_at = now() WHERE contractor_id = $1",
                contractor_id, *[columns[n] for n in names])
            if "mode" in columns and columns["mode"] != old_mode:
                await self._recompute_threshold(conn, contractor_id, f"mode {columns['mode']}", True)
            return await self._profile(conn, contractor_id)

    async def profile(self, contractor_id: str) -> StoredProfile:
        """The contractor's profile; the defaults when they never set one."""
        async with storage_errors(), self._pool.acquire() as conn:
            return await self._profile(conn, contractor_id)

    async def _profile(self, conn: asyncpg.Connection, contractor_id: str) -> StoredProfile:
        row = await conn.fetchrow(
            f"SELECT contractor_id, {_PROFILE_COLUMNS}, pause_threshold_cents, updated_at FROM routing.profiles"
            " WHERE contractor_id = $1", contractor_id)
        if row is None:
            return StoredProfile(Profile(contractor_id), 0, None)
        return StoredProfile(profile_from(contractor_id, row), row["pause_threshold_cents"], row["updated_at"])

    async def connected_calls_between(self, contractor_id: str, day_start: dt.datetime,
                                      month_start: dt.datetime) -> tuple[int, int]:
        """Connected calls in the local day and the local month that start at the given (aware) moments."""
        return (await self.connected_calls_for([(contractor_id, day_start, month_start)]))[contractor_id]

    async def connected_calls_for(
        self, asks: Sequence[tuple[str, dt.datetime, dt.datetime]]
    ) -> dict[str, tuple[int, int]]:
        """connected_calls_between for several contractors (each with their own local day and month), at once."""
        ends = [(day + dt.timedelta(days=1), (month + dt.timedelta(days=32)).replace(day=1)) for _, day, month in asks]
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT q.c, count(cc.started_at) FILTER (WHERE cc.started_at >= q.day AND cc.started_at < q.day_end)"
                " AS today, count(cc.started_at) AS month"
                " FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[])"
                " AS q(c, day, day_end, month, month_end)"
                " LEFT JOIN routing.connected_calls cc"
                " ON cc.contractor_id = q.c AND cc.started_at >= q.month AND cc.started_at < q.month_end"
                " GROUP BY q.c",
                [c for c, _, _ in asks], [d for _, d, _ in asks], [e[0] for e in ends], [m for _, _, m in asks],
                [e[1] for e in ends])
        return {r["c"]: (r["today"], r["month"]) for r in rows}

    async def _recompute_threshold(self, conn: asyncpg.Connection, contractor_id: str, cause: str,
                                   queue_push: bool) -> int:
        """The threshold from the claims and rates now, stored, and queued for the wallet in this transaction."""
        await conn.execute("INSERT INTO routing.profiles (contractor_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           contractor_id)
        threshold = await self.threshold_in(conn, contractor_id)
        await conn.execute("UPDATE routing.profiles SET pause_threshold_cents = $2, updated_at = now()"
                           " WHERE contractor_id = $1", contractor_id, threshold)
        if queue_push:
            await conn.execute("INSERT INTO routing.threshold_outbox (contractor_id, cause) VALUES ($1, $2)",
                               contractor_id, cause)
        return threshold

    async def threshold_in(self, conn: asyncpg.Connection, contractor_id: str) -> int:
        row = await conn.fetchrow(
            "SELECT coalesce((SELECT mode FROM routing.profiles WHERE contractor_id = $1), 'human') AS mode,"
            " coalesce((SELECT fee_cents FROM routing.booking_fees WHERE effective_from <= now()"
            "           ORDER BY effective_from DESC LIMIT 1), $2) AS fee,"
            " ARRAY(SELECT " + _RATE_NOW.format(zip="c.zip") + " FROM routing.claims c"
            "       WHERE c.contractor_id = $1) AS rates",
            contractor_id, DEFAULT_BOOKING_FEE_CENTS)
        rates = [r for r in row["rates"] if r is not None]
        return pause_threshold_cents(rates, row["mode"] == "ai_agent", row["fee"])

    # ------------------------------------------------------------ blocklist

    async def block(self, number: str, source: str, blocked_by: str, note: str,
                    refund_case_id: str = "") -> BlockedCaller:
        """Blocking twice is a no-op that returns the first entry."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO routing.blocked_callers (caller_number, source, blocked_by, note, refund_case_id)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (caller_number) DO NOTHING RETURNING *",
                number, source, blocked_by, note, refund_case_id)
            if row is None:
                row = await conn.fetchrow("SELECT * FROM routing.blocked_callers WHERE caller_number = $1", number)
                return BlockedCaller.from_row(row)
            await conn.execute("INSERT INTO routing.blocklist_history (caller_number, action, actor, note)"
                               " VALUES ($1, 'block', $2, $3)", number, blocked_by, note)
            return BlockedCaller.from_row(row)

    async def unblock(self, number: str, actor: str, note: str) -> BlockedCaller:
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("DELETE FROM routing.blocked_callers WHERE caller_number = $1 RETURNING *",
                                      number)
            if row is None:
                raise NotFound(f"caller {number} is not on the blocklist", reason="NOT_BLOCKED")
            await conn.execute("INSERT INTO routing.blocklist_history (caller_number, action, actor, note)"
                               " VALUES ($1, 'unblock', $2, $3)", number, actor, note)
            return BlockedCaller.from_row(row)

    async def blocked_page(self, before: tuple[dt.datetime, str] | None, limit: int) -> list[BlockedCaller]:
        async with storage_errors():
            if before is None:
                rows = await self._pool.fetch("SELECT * FROM routing.blocked_callers"
                                              " ORDER BY blocked_at DESC, caller_number DESC LIMIT $1", limit)
            else:
                rows = await self._pool.fetch(
                    "SELECT * FROM routing.blocked_callers WHERE (blocked_at, caller_number) < ($1, $2)"
                    " ORDER BY blocked_at DESC, caller_number DESC LIMIT $3", before[0], before[1], limit)
        return [BlockedCaller.from_row(r) for r in rows]

    async def blocked_numbers(self) -> set[str]:
        async with storage_errors():
            return {r[0] for r in await self._pool.fetch("SELECT caller_number FROM routing.blocked_callers")}

    # ------------------------------------------------------------ routing steps and missed calls

    async def insert_steps(self, steps: Sequence[dict]) -> None:
        async with storage_errors():
            await self._pool.execute(
                "INSERT INTO routing.steps (call_id, step, contractor_id, kind, zip, position, backup_rank,"
                " skip_reason, ring_outcome, message, rate_cents, at)"
                " SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],"
                "  $7::int[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::timestamptz[])"
                " ON CONFLICT (call_id, step, contractor_id, kind) DO NOTHING",
                *[[s[k] for s in steps] for k in STEP_FIELDS[:-1]],
                [dt.datetime.fromtimestamp(s["at"], dt.UTC) for s in steps])

    async def missed_calls(self, contractor_id: str, start: dt.datetime, end: dt.datetime,
                           before: tuple[dt.datetime, int] | None, limit: int) -> list[MissedStep]:
        before_at, before_id = before or (end, 2**62)
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM routing.steps WHERE contractor_id = $1 AND kind <> 'offered'"
                " AND at >= $2 AND at < $3 AND (at, step_id) < ($4, $5)"
                " ORDER BY at DESC, step_id DESC LIMIT $6",
                contractor_id, start, end, before_at, before_id, limit)
        return [MissedStep.from_row(r) for r in rows]

    # ------------------------------------------------------------ pause-threshold outbox

    async def contractors_due_a_push(self, limit: int) -> list[str]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT DISTINCT contractor_id FROM routing.threshold_outbox"
                " WHERE published_at IS NULL AND not_before <= now() LIMIT $1", limit)
        return [r[0] for r in rows]

    async def push_threshold(self, contractor_id: str, push: Callable[[int], Awaitable[None]]) -> int | None:
        """Recomputes the contractor's threshold and hands it to `push` (the wallet call), then marks the due
        outbox rows done, all under the profile's row lock: pushes for one contractor happen one at a time,
        each from the claims and rates of that moment, so the last push always carries the latest figure.
        None when nothing was due."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO routing.profiles (contractor_id) VALUES ($1) ON CONFLICT DO NOTHING",
                               contractor_id)
            await conn.execute("SELECT 1 FROM routing.profiles WHERE contractor_id = $1 FOR UPDATE", contractor_id)
            due = await conn.fetch(
                "SELECT event_id FROM routing.threshold_outbox WHERE contractor_id = $1 AND published_at IS NULL"
                " AND not_before <= now() FOR UPDATE SKIP LOCKED", contractor_id)
            if not due:
                return None
            threshold = await self.threshold_in(conn, contractor_id)
            await conn.execute("UPDATE routing.profiles SET pause_threshold_cents = $2 WHERE contractor_id = $1",
                               contractor_id, threshold)
            await push(threshold)
            await conn.execute("UPDATE routing.threshold_outbox SET published_at = now()"
                               " WHERE event_id = ANY($1::bigint[])", [r[0] for r in due])
            return threshold

    # ------------------------------------------------------------ billing events

    async def last_event_applied(self, stream: str) -> dt.datetime | None:
        """When routing last applied an event of the stream; None if it never did."""
        async with storage_errors():
            return await self._pool.fetchval("SELECT max(applied_at) FROM routing.consumed_events WHERE stream = $1",
                                             stream)

    async def apply_billing_events(self, stream: str, events: Sequence[BillingUpdate]) -> list[BillingUpdate]:
        """Applies each event once (deduped by event id in the same transaction); returns the ones new here."""
        applied = []
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            for ev in events:
                fresh = await conn.fetchval(
                    "INSERT INTO routing.consumed_events (stream, event_id) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING RETURNING true", stream, ev.event_id)
                if fresh:
                    await self._apply(conn, ev)
                    applied.append(ev)
        return applied

    async def _apply(self, conn: asyncpg.Connection, ev: BillingUpdate) -> None:
        if ev.kind == "zip_rate":
            await conn.execute(
                "INSERT INTO routing.zip_rates (zip, effective_from, rate_cents) VALUES ($1, $2, $3)"
                " ON CONFLICT (zip, effective_from) DO UPDATE SET rate_cents = $3, heard_at = now()",
                ev.zip, ev.effective_from, ev.cents)
            await conn.execute(
                "INSERT INTO routing.threshold_outbox (contractor_id, not_before, cause)"
                " SELECT contractor_id, greatest(now(), $2), $3 FROM routing.claims WHERE zip = $1",
                ev.zip, ev.effective_from, f"rate of {ev.zip} {ev.cents} (billing event {ev.event_id})")
        elif ev.kind == "booking_fee":
            await conn.execute(
                "INSERT INTO routing.booking_fees (effective_from, fee_cents) VALUES ($1, $2)"
                " ON CONFLICT (effective_from) DO UPDATE SET fee_cents = $2, heard_at = now()",
                ev.effective_from, ev.cents)
            await conn.execute(
                "INSERT INTO routing.threshold_outbox (contractor_id, not_before, cause)"
                " SELECT contractor_id, greatest(now(), $1), $2 FROM routing.profiles WHERE mode = 'ai_agent'",
                ev.effective_from, f"booking fee {ev.cents} (billing event {ev.event_id})")
        elif ev.kind == "block":
            row = await conn.fetchrow(
                "INSERT INTO routing.blocked_callers (caller_number, source, blocked_by, note, refund_case_id)"
                " VALUES ($1, 'spam_refund', $2, $3, $4) ON CONFLICT (caller_number) DO NOTHING RETURNING 1",
                ev.caller_number, ev.actor, ev.note, ev.refund_case_id)
            if row is not None:
                await conn.execute("INSERT INTO routing.blocklist_history (caller_number, action, actor, note)"
                                   " VALUES ($1, 'block', $2, $3)", ev.caller_number, ev.actor, ev.note)
        elif ev.kind == "call_rated" and ev.payer_contractor_id:
            await conn.execute(
                "INSERT INTO routing.connected_calls (call_id, contractor_id, started_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (call_id) DO NOTHING", ev.call_id, ev.payer_contractor_id, ev.effective_from)

    async def reject_entry(self, stream: str, entry_id: str, fields: dict, error: str) -> None:
        async with storage_errors():
            await self._pool.execute(
                "INSERT INTO routing.rejected_events (stream, entry_id, fields, error) VALUES ($1, $2, $3, $4)",
                stream, entry_id, json.dumps(fields), error)

    async def now(self) -> dt.datetime:
        async with storage_errors():
            return await self._pool.fetchval("SELECT now()")


STEP_FIELDS = ("call_id", "step", "contractor_id", "kind", "zip", "position", "backup_rank", "skip_reason",
               "ring_outcome", "message", "rate_cents", "at")


def unpriced(zip_code: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"ZIP {zip_code} has no call rate in effect, so it cannot be claimed; billing sets rates (SetZipRate)",
        reason="ZIP_UNPRICED", zip=zip_code)
