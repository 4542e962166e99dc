"""What must hold after call traffic went through a fault: each finished call has its one decision and at most
one debit, bookings and refunds moved money once, and the wallets add up. Each check returns the words the test
prints, and raises AssertionError with the offending rows when it fails."""

from __future__ import annotations

import asyncio

from callersync.billing.v1 import billing_pb2 as bpb
from tests.faults.traffic import SEED_CENTS, CallTraffic


async def one_decision_per_call(conn, traffic: CallTraffic) -> str:
    """Billing holds exactly one settled decision per call sent, a re-send replays that same decision, and
    ExplainCall tells the same one."""
    ids = [c.call.call_id for c in traffic.calls]
    rows = await conn.fetch(
        "SELECT call_id, state, billable, price_cents, payer_contractor_id FROM billing.rated_calls"
        " WHERE call_id = ANY($1::text[])",
        ids,
    )
    stored = {r["call_id"]: r for r in rows}
    assert len(rows) == len(ids) == len(set(ids)), f"{len(ids)} calls sent, {len(rows)} decisions stored"
    unsettled = [i for i, r in stored.items() if r["state"] != "settled"]
    assert not unsettled, f"decisions left settling: {unsettled[:5]}"
    gate = asyncio.Semaphore(16)

    async def replay(sent) -> None:
        row = stored[sent.call.call_id]
        assert (row["billable"], row["price_cents"], row["payer_contractor_id"]) == (
            sent.decision.billable,
            sent.decision.price_cents,
            sent.decision.payer_contractor_id,
        ), sent.call.call_id
        async with gate:
            again = await traffic.stubs.engine_billing.RateCall(bpb.RateCallRequest(call=sent.call), timeout=10)
            told = await traffic.stubs.billing.ExplainCall(
                bpb.ExplainCallRequest(call_id=sent.call.call_id), timeout=10
            )
        assert again.replayed, f"re-sending {sent.call.call_id} rated it again"
        assert again.decision == sent.decision, f"{sent.call.call_id}: {again.decision} != {sent.decision}"
        assert told.decision == sent.decision, (
            f"ExplainCall {sent.call.call_id}: {told.decision} != {sent.decision}"
        )

    await asyncio.gather(*(replay(c) for c in traffic.calls))
    return f"{len(ids)} calls have one settled decision each (re-send replayed it, ExplainCall agrees)"


async def at_most_one_debit_per_call(conn, traffic: CallTraffic) -> str:
    """Billing debits a call by capturing one of its reservations or, failing that, by Charge keyed call:<id>; the
    ledger holds one such entry for a billable call (of its price, on its payer) and none for a free one."""
    rows = await conn.fetch(
        "SELECT c.call_id, count(e.entry_id) AS n, coalesce(-sum(e.amount_cents), 0) AS cents,"
        "       array_agg(DISTINCT e.contractor_id) FILTER (WHERE e.entry_id IS NOT NULL) AS payers"
        "  FROM unnest($1::text[]) AS c(call_id)"
        "  LEFT JOIN wallet.entries e ON (e.kind = 'charge' AND e.idempotency_key = 'call:' || c.call_id)"
        "    OR (e.kind = 'capture' AND e.reservation_id IN"
        "        (SELECT reservation_id FROM wallet.reservations r WHERE r.call_id = c.call_id))"
        " GROUP BY c.call_id",
        [c.call.call_id for c in traffic.calls],
    )
    debits = {r["call_id"]: r for r in rows}
    wrong = []
    for sent in traffic.calls:
        row, d = debits[sent.call.call_id], sent.decision
        want = (1, d.price_cents, [d.payer_contractor_id]) if d.billable else (0, 0, None)
        if (row["n"], row["cents"], row["payers"]) != want:
            wrong.append((sent.call.call_id, dict(row), want))
    assert not wrong, f"{len(wrong)} calls debited wrongly, e.g. {wrong[:3]}"
    left_open = await conn.fetch(
        "SELECT call_id, contractor_id FROM wallet.reservations WHERE call_id = ANY($1::text[]) AND state = 'open'",
        list(debits),
    )
    assert not left_open, f"holds of rated calls still open: {[dict(r) for r in left_open[:5]]}"
    billable = sum(c.decision.billable for c in traffic.calls)
    return f"one debit per billable call ({billable}), none per free call, no hold of a rated call left open"


async def bookings_and_refunds_once(conn, traffic: CallTraffic) -> str:
    booked = [c for c in traffic.calls if c.booking is not None]
    rows = await conn.fetch(
        "SELECT idempotency_key, amount_cents FROM wallet.entries WHERE idempotency_key = ANY($1)",
        [f"booking:{c.booking.booking_id}" for c in booked],
    )
    found = {r["idempotency_key"]: r["amount_cents"] for r in rows}
    assert found == {f"booking:{c.booking.booking_id}": -c.booking_fee_cents for c in booked}, "booking fees"
    refunded = {c.decision.wallet_entry_id: c.refunded_cents for c in traffic.calls if c.refunded_cents}
    rows = await conn.fetch(
        "SELECT refund_of_entry_id, count(*) AS n, sum(amount_cents) AS cents FROM wallet.entries"
        " WHERE kind = 'refund' AND refund_of_entry_id = ANY($1::bigint[]) GROUP BY refund_of_entry_id",
        [c.decision.wallet_entry_id for c in traffic.calls if c.decision.billable],
    )
    assert {r["refund_of_entry_id"]: (r["n"], r["cents"]) for r in rows} == {
        e: (1, cents) for e, cents in refunded.items()
    }, "refund credits"
    return f"each of {len(booked)} booking fees charged once, each of {len(refunded)} refunds credited once"


async def wallets_add_up(conn, traffic: CallTraffic) -> str:
    """Over the test's wallets: balance = top-ups − charges + refunds, where each term is what the client was told
    and the ledger (by kind) agrees; over all wallets, the balances equal the ledger's sums by kind."""
    contractors = traffic.world.contractors
    sent_top_ups = SEED_CENTS * len(contractors) + sum(cents for _, cents in traffic.top_ups.values())
    told_charges = sum(c.decision.price_cents + c.booking_fee_cents for c in traffic.calls)
    told_refunds = sum(c.refunded_cents for c in traffic.calls)
    ledger = await conn.fetchrow(
        "SELECT coalesce(sum(amount_cents) FILTER (WHERE kind = 'top_up'), 0)::bigint AS top_ups,"
        "       coalesce(-sum(amount_cents) FILTER (WHERE kind IN ('charge', 'capture')), 0)::bigint AS charges,"
        "       coalesce(sum(amount_cents) FILTER (WHERE kind = 'refund'), 0)::bigint AS refunds"
        "  FROM wallet.entries WHERE contractor_id = ANY($1::text[])",
        contractors,
    )
    balances = await conn.fetchval(
        "SELECT sum(balance_cents)::bigint FROM wallet.wallets WHERE contractor_id = ANY($1::text[])",
        contractors,
    )
    assert (ledger["top_ups"], ledger["charges"], ledger["refunds"]) == (
        sent_top_ups,
        told_charges,
        told_refunds,
    ), f"ledger {dict(ledger)} vs sent top-ups {sent_top_ups}, charges {told_charges}, refunds {told_refunds}"
    assert balances == sent_top_ups - told_charges + told_refunds, f"wallets hold {balances}"
    every = await conn.fetchrow(
        "SELECT (SELECT sum(balance_cents)::bigint FROM wallet.wallets) AS balances, e.* FROM"
        " (SELECT coalesce(sum(amount_cents) FILTER (WHERE kind = 'top_up'), 0)::bigint AS top_ups,"
        "         coalesce(-sum(amount_cents) FILTER (WHERE kind IN ('charge', 'capture')), 0)::bigint AS charges,"
        "         coalesce(sum(amount_cents) FILTER (WHERE kind = 'refund'), 0)::bigint AS refunds"
        "    FROM wallet.entries) e"
    )
    assert every["balances"] == every["top_ups"] - every["charges"] + every["refunds"], dict(every)
    return (
        f"wallets {balances} = top-ups {sent_top_ups} - charges {told_charges} + refunds {told_refunds} cents; "
        f"all wallets {every['balances']} = {every['top_ups']} - {every['charges']} + {every['refunds']}"
    )
