"""SettleCalls: a batch of finished calls settled in one transaction, with Capture's and Charge's own keys."""

import asyncio
import uuid

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.wallet.support import balance, expect_error, ledger, top_up

OK, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION = 0, 5, 6, 9


async def reserve(wallet, contractor_id, call_id, cents=4000):
    reply = await wallet.Reserve(pb.ReserveRequest(contractor_id=contractor_id, call_id=call_id, amount_cents=cents))
    return reply.reservation.reservation_id


def item(call_id, payer="", cents=0, description="call"):
    if not payer:
        return pb.CallSettlement(call_id=call_id, description=description)
    return pb.CallSettlement(call_id=call_id, payer_contractor_id=payer, amount_cents=cents,
                             idempotency_key=f"call:{call_id}", reference=call_id, description=description)


async def settle(wallet, *items):
    return list((await wallet.SettleCalls(pb.SettleCallsRequest(items=items))).results)


async def states(wallet, call_id):
    held = (await wallet.ListCallReservations(pb.ListCallReservationsRequest(call_id=call_id))).reservations
    return {r.contractor_id: r.state for r in held}


async def test_the_payers_hold_is_captured_and_every_other_hold_released(wallet, db, contractor):
    other = contractor + "-b"
    call_id = uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    await top_up(wallet, other, 10_000)
    rid = await reserve(wallet, contractor, call_id)
    await reserve(wallet, other, call_id)
    [result] = await settle(wallet, item(call_id, contractor, 3500))
    assert result.code == OK and result.call_id == call_id
    assert (result.entry.kind, result.entry.amount_cents, result.entry.reservation_id) == (
        pb.ENTRY_KIND_CAPTURE, -3500, rid)
    assert await states(wallet, call_id) == {
        contractor: pb.RESERVATION_STATE_CAPTURED, other: pb.RESERVATION_STATE_RELEASED}
    assert (await balance(wallet, other)).available_cents == 10_000
    assert await ledger(db, contractor) == (6500, 2, 6500)


async def test_a_free_call_releases_every_hold_and_moves_no_money(wallet, db, contractor):
    call_id = uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    await reserve(wallet, contractor, call_id)
    [result] = await settle(wallet, item(call_id))
    assert result.code == OK and not result.HasField("entry")
    assert await states(wallet, call_id) == {contractor: pb.RESERVATION_STATE_RELEASED}
    assert await ledger(db, contractor) == (10_000, 1, 10_000)


async def test_without_a_capturable_hold_the_call_is_charged_by_its_key(wallet, db, contractor):
    released, none = uuid.uuid4().hex, uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    rid = await reserve(wallet, contractor, released)
    await wallet.Release(pb.ReleaseRequest(reservation_id=rid))
    results = await settle(wallet, item(released, contractor, 1000), item(none, contractor, 2000))
    assert [(r.code, r.entry.kind, r.entry.idempotency_key) for r in results] == [
        (OK, pb.ENTRY_KIND_CHARGE, f"call:{released}"), (OK, pb.ENTRY_KIND_CHARGE, f"call:{none}")]
    assert await ledger(db, contractor) == (7000, 3, 7000)


async def test_a_refused_item_moves_nothing_releases_nothing_and_spares_the_rest(wallet, db, contractor):
    call_a, call_b = uuid.uuid4().hex, uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    await reserve(wallet, contractor, call_a)
    results = await settle(wallet, item(call_a, contractor + "-nowallet", 1000), item(call_b, contractor, 500))
    assert (results[0].code, results[0].reason) == (NOT_FOUND, "NO_WALLET")
    assert contractor + "-nowallet" in results[0].message
    assert results[1].code == OK
    assert await states(wallet, call_a) == {contractor: pb.RESERVATION_STATE_OPEN}
    assert await ledger(db, contractor) == (9500, 2, 9500)


async def test_a_hold_captured_before_at_another_amount_is_refused_as_capture_would(wallet, db, contractor):
    call_id = uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    rid = await reserve(wallet, contractor, call_id)
    await wallet.Capture(pb.CaptureRequest(reservation_id=rid, amount_cents=4000, description="call"))
    [result] = await settle(wallet, item(call_id, contractor, 3000))
    assert (result.code, result.reason) == (FAILED_PRECONDITION, "RESERVATION_ALREADY_CAPTURED")
    assert "4000" in result.message
    assert await ledger(db, contractor) == (6000, 2, 6000)


async def test_a_charge_key_used_for_another_request_is_refused(wallet, db, contractor):
    call_id = uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    await wallet.Charge(pb.ChargeRequest(contractor_id=contractor, amount_cents=999, idempotency_key=f"call:{call_id}",
                                         reference="something else"))
    [result] = await settle(wallet, item(call_id, contractor, 1000))
    assert (result.code, result.reason) == (ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert await ledger(db, contractor) == (9001, 2, 9001)


async def test_single_capture_and_charge_replay_the_batch_and_the_batch_replays_them(wallet, db, contractor):
    captured, charged, later = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    await top_up(wallet, contractor, 50_000)
    rid = await reserve(wallet, contractor, captured)
    single_capture = await wallet.Capture(pb.CaptureRequest(reservation_id=rid, amount_cents=1000, description="x"))
    single_charge = await wallet.Charge(pb.ChargeRequest(
        contractor_id=contractor, amount_cents=2000, idempotency_key=f"call:{charged}", reference=charged,
        description="call"))
    results = await settle(wallet, item(captured, contractor, 1000), item(charged, contractor, 2000),
                           item(later, contractor, 3000))
    assert results[0].entry.entry_id == single_capture.entry.entry_id
    assert results[1].entry.entry_id == single_charge.entry.entry_id
    again = await wallet.Charge(pb.ChargeRequest(
        contractor_id=contractor, amount_cents=3000, idempotency_key=f"call:{later}", reference=later,
        description="call"))
    assert again.entry.entry_id == results[2].entry.entry_id
    assert await ledger(db, contractor) == (44_000, 4, 44_000)


async def test_concurrent_duplicate_batches_and_single_captures_move_money_exactly_once(wallet, db, contractor):
    payers = [f"{contractor}-{i}" for i in range(4)]
    for p in payers:
        await top_up(wallet, p, 100_000)
    calls = [uuid.uuid4().hex for _ in range(24)]
    holds = {}
    for i, call_id in enumerate(calls):
        if i % 3:  # every third call has no hold and is charged
            holds[call_id] = await reserve(wallet, payers[i % 4], call_id, 5000)
            await reserve(wallet, payers[(i + 1) % 4], call_id, 5000)  # a leg that did not pay
    items = [item(c, payers[i % 4], 1000 + i) for i, c in enumerate(calls)]
    batches = [items, list(reversed(items)), items[5:] + items[:5]] * 3
    singles = [wallet.Capture(pb.CaptureRequest(reservation_id=holds[c], amount_cents=1000 + i, description="call"))
               for i, c in enumerate(calls) if c in holds]
    replies = await asyncio.gather(
        *(wallet.SettleCalls(pb.SettleCallsRequest(items=b)) for b in batches), *singles)
    entry_of = {}
    for reply in replies[:len(batches)]:
        for r in reply.results:
            assert r.code == OK, r.message
            assert entry_of.setdefault(r.call_id, r.entry.entry_id) == r.entry.entry_id
    for _, c in enumerate(calls):
        assert await db.fetchval(
            "SELECT count(*) FROM wallet.entries WHERE idempotency_key IN ($1, $2)",
            f"call:{c}", f"capture:{holds.get(c, uuid.UUID(int=0))}") == 1
        assert set((await states(wallet, c)).values()) <= {
            pb.RESERVATION_STATE_CAPTURED, pb.RESERVATION_STATE_RELEASED}
    spent = sum(1000 + i for i in range(len(calls)))
    balances = [(await balance(wallet, p)).balance_cents for p in payers]
    assert sum(balances) == 400_000 - spent


async def test_malformed_items_are_invalid_and_write_nothing(wallet, db, contractor):
    call_id = uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    await reserve(wallet, contractor, call_id)
    await expect_error(wallet.SettleCalls(pb.SettleCallsRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    for bad in (pb.CallSettlement(call_id=""),
                pb.CallSettlement(call_id=call_id, payer_contractor_id=contractor, amount_cents=0,
                                  idempotency_key="k"),
                pb.CallSettlement(call_id=call_id, payer_contractor_id=contractor, amount_cents=100),
                pb.CallSettlement(call_id=call_id, amount_cents=100)):
        err = await expect_error(wallet.SettleCalls(pb.SettleCallsRequest(items=[item(call_id), bad])),
                                 grpc.StatusCode.INVALID_ARGUMENT)
        assert "items[1]" in err.details()
    assert await states(wallet, call_id) == {contractor: pb.RESERVATION_STATE_OPEN}
    assert await ledger(db, contractor) == (10_000, 1, 10_000)


async def test_one_payers_calls_in_a_batch_keep_a_running_balance_and_pause_them_once(wallet, db, contractor):
    calls = [uuid.uuid4().hex for _ in range(4)]
    await top_up(wallet, contractor, 10_000)
    await wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor, threshold_cents=5_000))
    await wallet.SetLowBalanceAlert(pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=7_000,
                                                                 email="owner@example.com"))
    for call_id in calls[:3]:
        await reserve(wallet, contractor, call_id, 2000)
    results = await settle(wallet, *(item(c, contractor, 2000) for c in calls))  # the last one without a hold
    assert [(r.code, r.entry.kind) for r in results] == [(OK, pb.ENTRY_KIND_CAPTURE)] * 3 + [
        (OK, pb.ENTRY_KIND_CHARGE)]
    in_order = sorted(calls)  # a batch is settled in (payer, call id) order
    assert [r.entry.balance_after_cents for r in results] == [10_000 - 2000 * (in_order.index(c) + 1) for c in calls]
    rows = await db.fetch("SELECT amount_cents, balance_after_cents FROM wallet.entries WHERE contractor_id = $1"
                          " ORDER BY entry_id", contractor)
    assert [(r["amount_cents"], r["balance_after_cents"]) for r in rows] == [
        (10_000, 10_000), (-2000, 8000), (-2000, 6000), (-2000, 4000), (-2000, 2000)]
    assert await ledger(db, contractor) == (2000, 5, 2000)
    assert (await balance(wallet, contractor)).paused
    topics = await db.fetch("SELECT topic, payload FROM wallet.outbox WHERE payload->>'contractor_id' = $1"
                            " ORDER BY event_id", contractor)
    assert sorted(r["topic"] for r in topics) == ["wallet.low_balance_email", "wallet.pause_changed"]
    assert all('"balance_cents": 2000' in r["payload"] for r in topics)  # one of each, at the batch's end
    assert await states(wallet, calls[0]) == {contractor: pb.RESERVATION_STATE_CAPTURED}


async def test_a_key_clash_inside_a_batch_falls_back_to_settling_item_by_item(wallet, db, contractor):
    """Two items that would write the same ledger key (a charge keyed like the other's capture) cannot both go
    the set-based way: the batch settles them one by one instead, and money moves once per key."""
    held, other = uuid.uuid4().hex, uuid.uuid4().hex
    await top_up(wallet, contractor, 10_000)
    rid = await reserve(wallet, contractor, held, 1500)
    clash = pb.CallSettlement(call_id=other, payer_contractor_id=contractor, amount_cents=700,
                              idempotency_key=f"capture:{rid}", reference=other, description="call")
    results = await settle(wallet, item(held, contractor, 1500), clash)
    keys = await db.fetch("SELECT idempotency_key, amount_cents FROM wallet.entries WHERE contractor_id = $1"
                          " AND kind <> 'top_up'", contractor)
    assert len({r["idempotency_key"] for r in keys}) == len(keys)
    moved = -sum(r["amount_cents"] for r in keys)
    assert await ledger(db, contractor) == (10_000 - moved, 1 + len(keys), 10_000 - moved)
    assert [r.code for r in results].count(OK) == len(keys)
    assert await states(wallet, held) != {contractor: pb.RESERVATION_STATE_OPEN}
