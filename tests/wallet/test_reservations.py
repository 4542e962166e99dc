"""Two-phase money for calls: Reserve holds, Capture settles once, Release frees, expiry frees by itself."""

import asyncio

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.wallet.support import balance, charge, expect_error, ledger, top_up


async def reserve(wallet, contractor_id, cents, call_id="call-1", expires_in_s=0):
    reply = await wallet.Reserve(
        pb.ReserveRequest(contractor_id=contractor_id, call_id=call_id, amount_cents=cents, expires_in_s=expires_in_s)
    )
    return reply.reservation


async def test_a_reservation_holds_funds_without_moving_money(wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    held = await reserve(wallet, contractor, 4000)
    assert held.state == pb.RESERVATION_STATE_OPEN
    w = await balance(wallet, contractor)
    assert (w.balance_cents, w.reserved_cents, w.available_cents) == (10_000, 4000, 6000)
    assert await ledger(db, contractor) == (10_000, 1, 10_000)


async def test_capture_settles_at_the_final_amount_and_frees_the_hold(wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    held = await reserve(wallet, contractor, 4000)
    reply = await wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=3500))
    assert reply.entry.kind == pb.ENTRY_KIND_CAPTURE and reply.entry.amount_cents == -3500
    assert reply.reservation.state == pb.RESERVATION_STATE_CAPTURED
    w = await balance(wallet, contractor)
    assert (w.balance_cents, w.reserved_cents) == (6500, 0)


async def test_a_reservation_is_captured_at_most_once(wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    held = await reserve(wallet, contractor, 4000)
    captures = await asyncio.gather(
        *(wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=4000)) for _ in range(10))
    )
    assert len({c.entry.entry_id for c in captures}) == 1
    err = await expect_error(
        wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=100)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "already captured at 4000" in err.details()
    assert await ledger(db, contractor) == (6000, 2, 6000)


async def test_release_frees_the_hold_and_a_released_reservation_cannot_be_captured(wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    held = await reserve(wallet, contractor, 4000)
    released = await wallet.Release(pb.ReleaseRequest(reservation_id=held.reservation_id))
    assert released.reservation.state == pb.RESERVATION_STATE_RELEASED
    again = await wallet.Release(pb.ReleaseRequest(reservation_id=held.reservation_id))
    assert again.reservation.state == pb.RESERVATION_STATE_RELEASED
    assert (await balance(wallet, contractor)).available_cents == 10_000
    await expect_error(
        wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=4000)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert await ledger(db, contractor) == (10_000, 1, 10_000)


async def test_a_captured_reservation_cannot_be_released(wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    held = await reserve(wallet, contractor, 4000)
    await wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=4000))
    await expect_error(wallet.Release(pb.ReleaseRequest(reservation_id=held.reservation_id)),
                       grpc.StatusCode.FAILED_PRECONDITION)


async def test_an_expired_reservation_stops_counting_by_itself_but_can_still_be_captured(wallet, db, contractor):
    await top_up(wallet, contractor, 10_000)
    held = await reserve(wallet, contractor, 4000, expires_in_s=1)
    assert (await balance(wallet, contractor)).available_cents == 6000
    await asyncio.sleep(1.2)
    assert (await balance(wallet, contractor)).available_cents == 10_000
    # The call happened: settling it late still charges it, once.
    reply = await wallet.Capture(pb.CaptureRequest(reservation_id=held.reservation_id, amount_cents=4000))
    assert reply.entry.amount_cents == -4000
    assert await ledger(db, contractor) == (6000, 2, 6000)


async def test_reserving_the_same_call_twice_returns_the_same_reservation(wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    first = await reserve(wallet, contractor, 4000)
    again = await reserve(wallet, contractor, 4000)
    assert again.reservation_id == first.reservation_id
    assert (await balance(wallet, contractor)).reserved_cents == 4000
    await expect_error(reserve(wallet, contractor, 5000), grpc.StatusCode.ALREADY_EXISTS)


async def test_concurrent_reserves_never_hold_more_than_the_balance(wallet, contractor):
    await top_up(wallet, contractor, 10_000)  # room for exactly 3 calls at 3000
    results = await asyncio.gather(
        *(reserve(wallet, contractor, 3000, call_id=f"call-{i}") for i in range(50)), return_exceptions=True
    )
    granted = [r for r in results if isinstance(r, pb.Reservation)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(granted) == 3
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused) and len(refused) == 47
    w = await balance(wallet, contractor)
    assert w.reserved_cents == 9000 and w.available_cents == 1000


async def test_a_paused_contractor_cannot_reserve(wallet, contractor):
    await top_up(wallet, contractor, 5000)
    await wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor, threshold_cents=6000))
    err = await expect_error(reserve(wallet, contractor, 100), grpc.StatusCode.FAILED_PRECONDITION)
    assert "paused" in err.details() and "top-up" in err.details()


async def test_a_charge_for_delivered_service_is_never_refused_for_lack_of_funds(wallet, db, contractor):
    await top_up(wallet, contractor, 2500)
    reply = await charge(wallet, contractor, 4000)
    assert reply.entry.balance_after_cents == -1500
    assert await ledger(db, contractor) == (-1500, 2, -1500)
