"""The wallet's SQL for money in: card and auto top-ups, saved cards and auto top-up settings, handed out as typed
records (records.py). The credit itself is wallet.credit_payment (migrations/R__functions.sql), in the balance's own
transaction with its receipt email."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg

from services.runtime.db import storage_errors
from services.wallet import top_ups
from services.wallet.provider import Payment
from services.wallet.records import CardCredit, CardSetup, ClaimedAutoTopUp, StoredAutoTopUp, TopUp

R = TypeVar("R")


def _found(from_row: Callable[[Any], R], row: Any) -> R | None:
    return from_row(row) if row is not None else None


class PaymentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start_card_top_up(self, top_up_id: str, contractor_id: str, amount_cents: int, currency: str,
                                email: str, key: str, request_hash: bytes) -> TopUp:
        """The top-up under this key: the new one, or the one a retry of the key made first."""
        async with storage_errors():
            row = await self._pool.fetchrow(
                "INSERT INTO wallet.top_ups (top_up_id, contractor_id, origin, amount_cents, currency, state, email,"
                " idempotency_key, request_hash) VALUES ($1, $2, 'card', $3, $4, 'pending', $5, $6, $7)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                uuid.UUID(top_up_id), contractor_id, amount_cents, currency, email, key, request_hash,
            )
            if row is None:
                row = await self._pool.fetchrow("SELECT * FROM wallet.top_ups WHERE idempotency_key = $1", key)
            return TopUp.from_row(row)

    async def top_up(self, top_up_id: str) -> TopUp | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM wallet.top_ups WHERE top_up_id = $1",
                                            uuid.UUID(top_up_id))
            return _found(TopUp.from_row, row)

    async def top_up_of_payment(self, payment_intent_id: str) -> TopUp | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM wallet.top_ups WHERE payment_intent_id = $1",
                                            payment_intent_id)
            return _found(TopUp.from_row, row)

    async def attach_payment(self, top_up_id: str, payment_intent_id: str, state: str = "pending") -> TopUp:
        """Records the PaymentIntent made for the top-up (the first one recorded wins)."""
        async with storage_errors():
            row = await self._pool.fetchrow(
                "UPDATE wallet.top_ups SET payment_intent_id = coalesce(payment_intent_id, $2),"
                " state = CASE WHEN state = 'requested' THEN $3 ELSE state END, updated_at = now()"
                " WHERE top_up_id = $1 RETURNING *",
                uuid.UUID(top_up_id), payment_intent_id, state,
            )
            return TopUp.from_row(row)

    async def record_state(self, top_up_id: str, state: str, failure_code: str = "", failure_reason: str = "",
                           card_brand: str = "", card_last4: str = "") -> TopUp | None:
        """The provider's state of a top-up not yet credited (a credited top-up stays credited)."""
        async with storage_errors():
            row = await self._pool.fetchrow(
                "UPDATE wallet.top_ups SET state = $2, failure_code = $3, failure_reason = $4,"
                " card_brand = CASE WHEN $5 <> '' THEN $5 ELSE card_brand END,"
                " card_last4 = CASE WHEN $6 <> '' THEN $6 ELSE card_last4 END, updated_at = now()"
                " WHERE top_up_id = $1 AND state <> 'credited' RETURNING *",
                uuid.UUID(top_up_id), state, failure_code, failure_reason[:500], card_brand, card_last4,
            )
            return _found(TopUp.from_row, row)

    async def credit(self, top_up_id: str, payment_intent_id: str, received_cents: int, card_brand: str,
                     card_last4: str) -> CardCredit:
        """Credits the top-up once (wallet.credit_payment); a credited auto top-up also clears the declines."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM wallet.credit_payment($1, $2, $3, $4, $5)",
                                      uuid.UUID(top_up_id), payment_intent_id, received_cents, card_brand, card_last4)
            if row["outcome"] == "credited":
                await conn.execute(
                    "UPDATE wallet.auto_top_ups a SET consecutive_declines = 0 FROM wallet.top_ups t"
                    " WHERE t.top_up_id = $1 AND t.origin = 'auto' AND a.contractor_id = t.contractor_id",
                    uuid.UUID(top_up_id))
            return CardCredit.from_row(row)

    async def record_refusal(self, payment: Payment, reason: str) -> None:
        """Keeps a PaymentIntent the wallet would not credit where an operator (and reconcile) sees it; asked
        again, its figures are brought up to date."""
        async with storage_errors():
            await self._pool.execute(
                "INSERT INTO wallet.refused_payments (payment_intent_id, top_up_id, contractor_id, status,"
                " amount_cents, received_cents, currency, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (payment_intent_id) DO UPDATE SET status = $4, amount_cents = $5,"
                " received_cents = $6, currency = $7, reason = $8, last_seen_at = now()",
                payment.payment_intent_id, payment.metadata.get("top_up_id", "")[:100],
                payment.metadata.get("contractor_id", "")[:200], payment.status, payment.amount_cents,
                payment.received_cents, payment.currency, reason[:500],
            )

    async def due_for_sweep(self, after_ms: int, limit: int = 100) -> list[TopUp]:
        """Card and auto top-ups whose PaymentIntent is known and still open, untouched for after_ms."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM wallet.top_ups WHERE state IN ('pending', 'requires_action')"
                " AND payment_intent_id IS NOT NULL AND next_attempt_at <= now()"
                " AND updated_at <= now() - make_interval(secs => $1::float8 / 1000)"
                " ORDER BY next_attempt_at LIMIT $2",
                after_ms, limit,
            )
            return [TopUp.from_row(r) for r in rows]

    async def swept(self, top_up_id: str, after_ms: int) -> None:
        """Asked about and still open: ask again later, less often the longer it stays open (at most hourly)."""
        async with storage_errors():
            await self._pool.execute(
                "UPDATE wallet.top_ups SET attempts = attempts + 1, next_attempt_at = now() +"
                " least(make_interval(secs => $2::float8 / 1000 * (attempts + 1)), interval '1 hour')"
                " WHERE top_up_id = $1",
                uuid.UUID(top_up_id), after_ms,
            )

    async def claim_auto(self, lease_ms: int, limit: int = 20) -> list[ClaimedAutoTopUp]:
        """Auto top-ups waiting for their provider call, leased to this process for lease_ms (a crash mid-call
        leaves them to be claimed again after it, and that attempt looks for the first one's PaymentIntent)."""
        async with storage_errors():
            rows = await self._pool.fetch(
                "UPDATE wallet.top_ups t SET attempts = t.attempts + 1,"
                " next_attempt_at = now() + make_interval(secs => $1::float8 / 1000)"
                " FROM (SELECT top_up_id FROM wallet.top_ups WHERE state = 'requested' AND next_attempt_at <= now()"
                "       ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) due,"
                "      wallet.auto_top_ups a"
                " WHERE t.top_up_id = due.top_up_id AND a.contractor_id = t.contractor_id"
                " RETURNING t.*, a.customer_id, a.payment_method_id, a.enabled AS auto_enabled",
                lease_ms, limit,
            )
            return [ClaimedAutoTopUp.from_row(r) for r in rows]

    async def retry_later(self, top_up_id: str, delay_ms: int, code: str, message: str) -> None:
        async with storage_errors():
            await self._pool.execute(
                "UPDATE wallet.top_ups SET next_attempt_at = now() + make_interval(secs => $2::float8 / 1000),"
                " failure_code = $3, failure_reason = $4, updated_at = now()"
                " WHERE top_up_id = $1 AND state = 'requested'",
                uuid.UUID(top_up_id), delay_ms, code, message[:500],
            )

    async def auto_failed(self, top_up_id: str, state: str, code: str, reason: str, link: str) -> None:
        """An auto top-up declined (state failed) or held for authentication (requires_action): recorded with its
        email in one transaction; a third decline in a row turns auto top-up off, and its email says so."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            t = await conn.fetchrow(
                "UPDATE wallet.top_ups SET state = $2, failure_code = $3, failure_reason = $4, updated_at = now()"
                " WHERE top_up_id = $1 AND state IN ('requested', 'pending') RETURNING *",
                uuid.UUID(top_up_id), state, code, reason[:500],
            )
            if t is None:
                return  # recorded before (a webhook and the charger both saw it)
            a = await conn.fetchrow(
                "UPDATE wallet.auto_top_ups SET consecutive_declines = consecutive_declines + $2, updated_at = now()"
                " WHERE contractor_id = $1 RETURNING *",
                t["contractor_id"], 1 if state == "failed" else 0,
            )
            payload: dict[str, Any] = {
                "kind": "declined" if state == "failed" else "authentication_required",
                "contractor_id": t["contractor_id"], "email": t["email"], "top_up_id": str(t["top_up_id"]),
                "amount_cents": t["amount_cents"], "reason": reason, "link": link,
                "declines": a["consecutive_declines"] if a else 0, "disabled": False,
            }
            if (a is not None and state == "failed" and a["consecutive_declines"] >= top_ups.MAX_CONSECUTIVE_DECLINES
                    and a["enabled"]):
                await conn.execute(
                    "UPDATE wallet.auto_top_ups SET enabled = false, disabled_reason = $2 WHERE contractor_id = $1",
                    t["contractor_id"], "three charges of your card were declined in a row")
                await conn.execute("UPDATE wallet.wallets SET auto_top_up_threshold_cents = 0 WHERE contractor_id = $1",
                                   t["contractor_id"])
                payload["disabled"] = True
            await conn.execute("INSERT INTO wallet.outbox (topic, payload) VALUES ('wallet.payment_email', $1)",
                               json.dumps(payload))

    # ------------------------------------------------------------------ saved cards and settings

    async def auto_settings(self, contractor_id: str) -> StoredAutoTopUp | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM wallet.auto_top_ups WHERE contractor_id = $1",
                                            contractor_id)
            return _found(StoredAutoTopUp.from_row, row)

    async def wallet_exists(self, contractor_id: str) -> bool:
        async with storage_errors():
            return bool(await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM wallet.wallets WHERE contractor_id = $1)", contractor_id))

    async def keep_customer(self, contractor_id: str, customer_id: str) -> str:
        """Stores the contractor's provider Customer unless one is stored already; returns the stored one."""
        async with storage_errors():
            await self._pool.execute(
                "INSERT INTO wallet.auto_top_ups (contractor_id, customer_id) VALUES ($1, $2)"
                " ON CONFLICT (contractor_id) DO UPDATE SET customer_id = $2"
                " WHERE wallet.auto_top_ups.customer_id = ''",
                contractor_id, customer_id,
            )
            return await self._pool.fetchval("SELECT customer_id FROM wallet.auto_top_ups WHERE contractor_id = $1",
                                             contractor_id)

    async def add_card_setup(self, setup_intent_id: str, contractor_id: str, customer_id: str) -> None:
        async with storage_errors():
            await self._pool.execute(
                "INSERT INTO wallet.card_setups (setup_intent_id, contractor_id, customer_id) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING", setup_intent_id, contractor_id, customer_id)

    async def card_setup(self, setup_intent_id: str) -> CardSetup | None:
        async with storage_errors():
            row = await self._pool.fetchrow("SELECT * FROM wallet.card_setups WHERE setup_intent_id = $1",
                                            setup_intent_id)
            return _found(CardSetup.from_row, row)

    async def pending_card_setups(self, contractor_id: str) -> list[str]:
        async with storage_errors():
            rows = await self._pool.fetch(
                "SELECT setup_intent_id FROM wallet.card_setups WHERE contractor_id = $1 AND state = 'pending'"
                " ORDER BY created_at DESC LIMIT 5", contractor_id)
            return [r["setup_intent_id"] for r in rows]

    async def card_setup_done(self, setup_intent_id: str, state: str, payment_method_id: str = "",
                              card_brand: str = "", card_last4: str = "") -> None:
        """A card setup ended; when it succeeded its card becomes the one auto top-up charges."""
        async with storage_errors(), self._pool.acquire() as conn, conn.transaction():
            setup = await conn.fetchrow(
                "UPDATE wallet.card_setups SET state = $2 WHERE setup_intent_id = $1 RETURNING *",
                setup_intent_id, state)
            if setup is None or state != "succeeded":
                return
            await conn.execute(
                "UPDATE wallet.auto_top_ups SET payment_method_id = $2, card_brand = $3, card_last4 = $4,"
                " consecutive_declines = 0, updated_at = now() WHERE contractor_id = $1",
                setup["contractor_id"], payment_method_id, card_brand, card_last4)

    async def set_auto_top_up(self, contractor_id: str, enabled: bool, threshold_cents: int, amount_cents: int,
                              max_per_day_cents: int, max_per_hour: int, email: str) -> str:
        async with storage_errors():
            return await self._pool.fetchval(
                "SELECT wallet.set_auto_top_up($1, $2, $3, $4, $5, $6, $7)",
                contractor_id, enabled, threshold_cents, amount_cents, max_per_day_cents, max_per_hour, email)
