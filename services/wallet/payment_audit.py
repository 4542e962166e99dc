"""Reconcile's question to the payment provider: is every PaymentIntent known to a top-up that succeeded credited
(exactly once is the ledger's own check)? A succeeded payment without its credit is money a contractor paid and
never got."""

from __future__ import annotations

import asyncpg

from services.wallet.provider import PaymentProvider, ProviderError


async def uncredited_payments(conn: asyncpg.Connection, provider: PaymentProvider) -> tuple[list[dict], int]:
    """(problems, how many PaymentIntents were asked about)."""
    rows = await conn.fetch(
        "SELECT top_up_id, contractor_id, payment_intent_id, state FROM wallet.top_ups"
        " WHERE payment_intent_id IS NOT NULL AND state <> 'credited' ORDER BY created_at")
    problems: list[dict] = []
    for row in rows:
        try:
            payment = await provider.payment(row["payment_intent_id"])
        except ProviderError as err:
            if err.kind == "not_found":
                continue
            problems.append({"top_up_id": row["top_up_id"], "payment_intent_id": row["payment_intent_id"],
                             "problem": f"the provider could not be asked: {err}"})
            continue
        if payment.status == "succeeded" and row["state"] != "refused":
            problems.append({"top_up_id": row["top_up_id"], "contractor_id": row["contractor_id"],
                             "payment_intent_id": row["payment_intent_id"], "state": row["state"],
                             "received_cents": payment.received_cents})
    return problems, len(rows)
