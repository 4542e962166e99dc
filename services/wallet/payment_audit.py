"""Reconcile's questions to the payment provider: is every PaymentIntent known to a top-up that succeeded credited
(exactly once is the ledger's own check), and has every refused PaymentIntent that succeeded been settled by an
operator? A succeeded payment without its credit is money a contractor paid and never got."""

from __future__ import annotations

import asyncpg

from services.wallet.provider import PaymentProvider, ProviderError

# Settling is an operator's act at the provider or by a manual credit; the note records who did what.
HOW_TO_SETTLE = ("To settle a refused PaymentIntent: refund it at Stripe, or credit the contractor by hand (TopUp "
                 "with a reason); then write what you did: UPDATE wallet.refused_payments SET settled_note = "
                 "'<what and who>' WHERE payment_intent_id = '<pi_...>' (docs/payments.md)")


async def uncredited_payments(conn: asyncpg.Connection, provider: PaymentProvider) -> tuple[list[dict], int]:
    """(problems, how many PaymentIntents were asked about). A top-up the wallet refused is no exception: if its
    PaymentIntent succeeded, the card was charged and nothing arrived."""
    rows = await conn.fetch(
        "SELECT top_up_id, contractor_id, payment_intent_id, state, failure_reason FROM wallet.top_ups"
        " WHERE payment_intent_id IS NOT NULL AND state <> 'credited'"
        "   AND payment_intent_id NOT IN (SELECT payment_intent_id FROM wallet.refused_payments)"  # judged below
        " ORDER BY created_at")
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
        if payment.status == "succeeded":
            problem = {"top_up_id": row["top_up_id"], "contractor_id": row["contractor_id"],
                       "payment_intent_id": row["payment_intent_id"], "state": row["state"],
                       "received_cents": payment.received_cents}
            if row["failure_reason"]:
                problem["why"] = row["failure_reason"]
            problems.append(problem)
    return problems, len(rows)


async def refused_payments_paid(conn: asyncpg.Connection, provider: PaymentProvider | None) -> list[dict]:
    """Refused PaymentIntents no operator has settled that succeeded: as last recorded, or, with a provider, as
    it says now (one refused before its payment went through and never heard of again)."""
    rows = await conn.fetch(
        "SELECT payment_intent_id, contractor_id, top_up_id, status, received_cents, reason"
        " FROM wallet.refused_payments WHERE settled_note = '' AND status <> 'canceled' ORDER BY first_seen_at")
    problems: list[dict] = []
    for row in rows:
        status, received = row["status"], row["received_cents"]
        if provider is not None and status != "succeeded":
            try:
                payment = await provider.payment(row["payment_intent_id"])
                status, received = payment.status, payment.received_cents
            except ProviderError as err:
                if err.kind != "not_found":
                    problems.append({"payment_intent_id": row["payment_intent_id"],
                                     "problem": f"the provider could not be asked: {err}"})
                continue
        if status == "succeeded":
            problems.append({"payment_intent_id": row["payment_intent_id"], "contractor_id": row["contractor_id"],
                             "top_up_id": row["top_up_id"], "received_cents": received, "why": row["reason"]})
    return problems
