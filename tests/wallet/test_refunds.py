"""Refund: a credit that references its charge, at most once per charge, never more than the charge."""

import asyncio
import uuid

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.wallet.support import charge, expect_error, ledger, top_up


def refund(wallet, entry_id, cents, key=None):
    return wallet.Refund(
        pb.RefundRequest(charge_entry_id=entry_id, amount_cents=cents, idempotency_key=key or uuid.uuid4().hex)
    )


async def test_a_refund_credits_the_wallet_and_references_the_charge(wallet, db, contractor):
    await top_up(wallet, contractor, 5000)
    charged = await charge(wallet, contractor, 2500)
    reply = await refund(wallet, charged.entry.entry_id, 2500)
    assert reply.entry.kind == pb.ENTRY_KIND_REFUND
    assert reply.entry.refund_of_entry_id == charged.entry.entry_id
    assert await ledger(db, contractor) == (5000, 3, 5000)


async def test_a_charge_is_refunded_at_most_once_even_concurrently(wallet, db, contractor):
    await top_up(wallet, contractor, 5000)
    charged = await charge(wallet, contractor, 2500)
    results = await asyncio.gather(
        *(refund(wallet, charged.entry.entry_id, 1000) for _ in range(20)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.RefundResponse)]
    assert len(ok) == 1
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in results if r not in ok)
    assert await ledger(db, contractor) == (3500, 3, 3500)


async def test_a_refund_never_exceeds_the_charge(wallet, db, contractor):
    await top_up(wallet, contractor, 5000)
    charged = await charge(wallet, contractor, 2500)
    err = await expect_error(refund(wallet, charged.entry.entry_id, 2501), grpc.StatusCode.FAILED_PRECONDITION)
    assert "exceeds" in err.details()
    assert await ledger(db, contractor) == (2500, 2, 2500)


async def test_a_top_up_is_not_a_charge_and_cannot_be_refunded(wallet, db, contractor):
    topped = await top_up(wallet, contractor, 5000)
    await expect_error(refund(wallet, topped.entry.entry_id, 100), grpc.StatusCode.NOT_FOUND)
    await expect_error(refund(wallet, 987_654_321, 100), grpc.StatusCode.NOT_FOUND)
    assert await ledger(db, contractor) == (5000, 1, 5000)


async def test_a_retried_refund_replays_and_a_captured_call_can_be_refunded(wallet, db, contractor):
    await top_up(wallet, contractor, 5000)
    held = (await wallet.Reserve(
        pb.ReserveRequest(contractor_id=contractor, call_id="c", amount_cents=3000))).reservation
    captured = await wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=3000))
    first = await refund(wallet, captured.entry.entry_id, 3000, key=f"r-{contractor}")
    again = await refund(wallet, captured.entry.entry_id, 3000, key=f"r-{contractor}")
    assert again == first
    assert await ledger(db, contractor) == (5000, 3, 5000)
