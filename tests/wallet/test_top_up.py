"""TopUp (an operator's manual credit): the $25 minimum, no maximum unless set, exactly-once under retries,
concurrency and a Redis flush."""

import asyncio
import uuid

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from services.runtime.idempotency import retry_metadata
from tests.wallet.support import balance, expect_error, ledger, top_up


async def test_first_top_up_creates_the_wallet(wallet, db, contractor):
    reply = await top_up(wallet, contractor, 2500)
    assert reply.entry.kind == pb.ENTRY_KIND_TOP_UP
    assert reply.entry.amount_cents == 2500 and reply.entry.balance_after_cents == 2500
    w = await balance(wallet, contractor)
    assert (w.balance_cents, w.available_cents, w.paused) == (2500, 2500, False)
    assert await ledger(db, contractor) == (2500, 1, 2500)


async def test_top_up_below_25_dollars_is_refused_and_writes_nothing(wallet, db, contractor):
    err = await expect_error(top_up(wallet, contractor, 2499), grpc.StatusCode.INVALID_ARGUMENT)
    assert "2500" in err.details()
    assert await ledger(db, contractor) == (None, 0, 0)


async def test_any_amount_above_the_minimum_is_credited_when_no_maximum_is_set(wallet, db, contractor):
    # "Prepay any amount, $25 minimum": the per-top-up maximum is an operator's opt-in, off by default.
    await top_up(wallet, contractor, 1_000_001)
    assert await ledger(db, contractor) == (1_000_001, 1, 1_000_001)


async def test_retry_with_the_same_key_returns_the_first_answer_and_moves_money_once(wallet, db, contractor):
    first = await top_up(wallet, contractor, 5000, key=f"k-{contractor}")
    again = await top_up(wallet, contractor, 5000, key=f"k-{contractor}")
    assert again == first
    assert await ledger(db, contractor) == (5000, 1, 5000)


async def test_same_key_with_different_parameters_is_rejected(wallet, db, contractor):
    await top_up(wallet, contractor, 5000, key=f"k-{contractor}")
    err = await expect_error(top_up(wallet, contractor, 6000, key=f"k-{contractor}"), grpc.StatusCode.ALREADY_EXISTS)
    assert "different request" in err.details()
    assert await ledger(db, contractor) == (5000, 1, 5000)


async def test_retry_after_redis_lost_every_key_still_moves_money_once(wallet, db, redis_client, contractor):
    first = await top_up(wallet, contractor, 5000, key=f"k-{contractor}")
    await redis_client.flushdb()
    again = await top_up(wallet, contractor, 5000, key=f"k-{contractor}")
    assert again == first
    await redis_client.flushdb()
    await expect_error(top_up(wallet, contractor, 7000, key=f"k-{contractor}"), grpc.StatusCode.ALREADY_EXISTS)
    assert await ledger(db, contractor) == (5000, 1, 5000)


async def test_a_first_attempt_skips_redis_and_a_marked_retry_is_answered_and_remembered_there(
        wallet, db, redis_client, contractor):
    key = f"k-{contractor}"
    request = pb.TopUpRequest(reason="operator credit", contractor_id=contractor, amount_cents=5000,
                              payment_reference=f"pay-{key}", idempotency_key=key)
    first = await wallet.TopUp(request)
    assert not await redis_client.exists(f"idem:wallet:{key}")  # PostgreSQL's unique key alone
    again = await wallet.TopUp(request)  # an unmarked resend: the unique key answers it too
    retried = await wallet.TopUp(request, metadata=retry_metadata(2))
    assert again == retried == first
    assert await redis_client.exists(f"idem:wallet:{key}")  # kept for the retries after it
    assert await wallet.TopUp(request, metadata=retry_metadata(3)) == first
    other = pb.TopUpRequest(reason="operator credit", contractor_id=contractor, amount_cents=6000,
                            payment_reference=f"pay-{key}", idempotency_key=key)
    await expect_error(wallet.TopUp(other, metadata=retry_metadata(2)), grpc.StatusCode.ALREADY_EXISTS)
    assert await ledger(db, contractor) == (5000, 1, 5000)


async def test_200_concurrent_top_ups_with_50_repeated_keys_apply_exactly_150(wallet, db, contractor):
    keys = [f"{contractor}-{i}" for i in range(150)]
    sends = keys + keys[:50]  # 50 of the 200 repeat an earlier key
    replies = await asyncio.gather(*(top_up(wallet, contractor, 2500, key=k) for k in sends))
    by_key: dict[str, set[int]] = {}
    for key, reply in zip(sends, replies, strict=True):
        by_key.setdefault(key, set()).add(reply.entry.entry_id)
    assert all(len(ids) == 1 for ids in by_key.values()), "a repeated key got a second entry"
    assert await ledger(db, contractor) == (150 * 2500, 150, 150 * 2500)


async def test_the_same_key_from_two_contractors_is_caught(wallet, db, contractor):
    other = f"other-{uuid.uuid4().hex[:8]}"
    await top_up(wallet, contractor, 2500, key=f"shared-{contractor}")
    await expect_error(top_up(wallet, other, 2500, key=f"shared-{contractor}"), grpc.StatusCode.ALREADY_EXISTS)
    assert await ledger(db, other) == (None, 0, 0)


async def test_a_reference_credited_before_is_refused_without_creating_a_wallet(wallet, db, contractor):
    await top_up(wallet, contractor, 2500, key=f"first-{contractor}")
    newcomer = f"new-{contractor}"
    err = await expect_error(
        wallet.TopUp(pb.TopUpRequest(reason="operator credit", contractor_id=newcomer, amount_cents=2500,
                                     payment_reference=f"pay-first-{contractor}", idempotency_key=uuid.uuid4().hex)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "already" in err.details().lower()
    assert await db.fetchval("SELECT count(*) FROM wallet.wallets WHERE contractor_id = $1", newcomer) == 0
