"""The pause rule and the low-balance alert: flags flip with the balance change that crosses them."""

import asyncio

import grpc

from callersync.wallet.v1 import events_pb2
from callersync.wallet.v1 import wallet_pb2 as pb
from services.wallet.alerts import EVENTS_STREAM
from tests.wallet.support import balance, charge, expect_error, top_up


async def set_threshold(wallet, contractor_id, cents):
    return (await wallet.SetPauseThreshold(
        pb.SetPauseThresholdRequest(contractor_id=contractor_id, threshold_cents=cents))).wallet


async def routability(wallet, ids, cents):
    reply = await wallet.GetRoutability(pb.GetRoutabilityRequest(contractor_ids=ids, amount_cents=cents))
    return [(r.contractor_id, r.routable, r.reason) for r in reply.routabilities]


async def pause_events(redis_client, contractor_id, want, timeout_s=5.0):
    """The pause flips published for this contractor, waiting until `want` of them arrived."""
    found = []
    for _ in range(int(timeout_s / 0.05)):
        found = []
        for _id, fields in await redis_client.xrange(EVENTS_STREAM):
            event = events_pb2.WalletEvent.FromString(fields[b"data"])
            if event.pause_changed.contractor_id == contractor_id:
                found.append(event.pause_changed.paused)
        if len(found) >= want:
            break
        await asyncio.sleep(0.05)
    return found


async def test_balance_below_the_most_expensive_rate_pauses_and_a_top_up_resumes(wallet, redis_client, contractor):
    await top_up(wallet, contractor, 5000)
    assert not (await set_threshold(wallet, contractor, 4000)).paused
    await charge(wallet, contractor, 1500)  # 3500 < 4000
    assert (await balance(wallet, contractor)).paused
    await top_up(wallet, contractor, 2500)  # 6000 >= 4000
    assert not (await balance(wallet, contractor)).paused
    assert await pause_events(redis_client, contractor, 2) == [True, False]


async def test_a_balance_exactly_at_the_threshold_is_not_paused(wallet, contractor):
    await top_up(wallet, contractor, 4000)
    assert not (await set_threshold(wallet, contractor, 4000)).paused
    assert (await set_threshold(wallet, contractor, 4001)).paused


async def test_threshold_can_be_set_before_the_first_top_up(wallet, contractor):
    w = await set_threshold(wallet, contractor, 3000)
    assert w.paused and w.balance_cents == 0
    await top_up(wallet, contractor, 3000)
    assert not (await balance(wallet, contractor)).paused


async def test_routability_answers_for_a_batch_in_order_with_reasons(wallet, contractor):
    rich, paused, tight, missing = (f"{contractor}-{n}" for n in ("rich", "paused", "tight", "missing"))
    await top_up(wallet, rich, 10_000)
    await top_up(wallet, paused, 5000)
    await set_threshold(wallet, paused, 6000)
    await top_up(wallet, tight, 5000)
    await wallet.Reserve(pb.ReserveRequest(contractor_id=tight, call_id="x", amount_cents=4000))
    assert await routability(wallet, [missing, tight, paused, rich], 2000) == [
        (missing, False, pb.ROUTABILITY_REASON_NO_WALLET),
        (tight, False, pb.ROUTABILITY_REASON_INSUFFICIENT_AVAILABLE),
        (paused, False, pb.ROUTABILITY_REASON_PAUSED),
        (rich, True, pb.ROUTABILITY_REASON_ROUTABLE),
    ]


async def wait_for_emails(smtp, address, want, settle_s=0.3):
    for _ in range(100):
        if len(smtp.to(address)) >= want:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle_s)  # long enough for a wrong extra email to show up
    return smtp.to(address)


async def test_one_email_per_downward_crossing_rearmed_when_back_above(wallet, smtp, contractor):
    address = f"{contractor}@example.com"
    await top_up(wallet, contractor, 5000)
    w = (await wallet.SetLowBalanceAlert(
        pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=3000, email=address))).wallet
    assert w.low_balance_alert.armed
    await charge(wallet, contractor, 2500)  # 2500: below, first email
    await charge(wallet, contractor, 100)  # still below: no second email
    assert len(await wait_for_emails(smtp, address, 1)) == 1
    assert not (await balance(wallet, contractor)).low_balance_alert.armed
    await top_up(wallet, contractor, 2500)  # 4900: back above, re-armed
    assert (await balance(wallet, contractor)).low_balance_alert.armed
    await charge(wallet, contractor, 2000)  # 2900: below again, second email
    mails = await wait_for_emails(smtp, address, 2)
    assert len(mails) == 2
    assert b"below $30.00" in mails[0]


async def test_setting_an_alert_above_the_balance_sends_one_email_now(wallet, smtp, contractor):
    address = f"{contractor}@example.com"
    await top_up(wallet, contractor, 2500)
    await wallet.SetLowBalanceAlert(
        pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=3000, email=address))
    assert len(await wait_for_emails(smtp, address, 1)) == 1


async def test_alert_settings_are_validated(wallet, contractor):
    await top_up(wallet, contractor, 2500)
    for email in ("not-an-email", "a@b", "two@@example.com", ""):
        await expect_error(
            wallet.SetLowBalanceAlert(pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=100,
                                                                   email=email)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    await expect_error(
        wallet.SetLowBalanceAlert(pb.SetLowBalanceAlertRequest(contractor_id="nobody-" + contractor,
                                                               threshold_cents=100, email="a@example.com")),
        grpc.StatusCode.NOT_FOUND,
    )
    off = await wallet.SetLowBalanceAlert(pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=0))
    assert off.wallet.low_balance_alert.threshold_cents == 0
