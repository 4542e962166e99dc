"""Auto top-up against a real localstripe: opt-in with consent, fired once per fall below the threshold (judged on
the available balance in the balance's own transaction), never past the daily maximum, off after three declines
or a runaway, and a payment the bank wants authenticated is not retried off-session."""

from __future__ import annotations

import asyncio
import re

import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.payments.conftest import contractor_headers, credits, eventually, operator_headers
from tests.payments.support import auto, auto_top_ups, charge, funded, save_card
from tests.wallet.support import expect_error


async def test_auto_top_up_is_off_by_default_needs_a_card_and_stays_above_the_pause_line(hooked, contractor):
    await funded(hooked, contractor, pause_cents=3000)
    wallet = (await hooked.wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor))).wallet
    assert not wallet.auto_top_up.enabled
    await expect_error(hooked.wallet.SetAutoTopUp(auto(contractor)), grpc.StatusCode.FAILED_PRECONDITION)  # no card
    await save_card(hooked, contractor)
    err = await expect_error(hooked.wallet.SetAutoTopUp(auto(contractor, threshold=2000)),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert "pause line" in err.details()
    await expect_error(hooked.wallet.SetAutoTopUp(auto(contractor, amount=2000)), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(hooked.wallet.SetAutoTopUp(auto(contractor, per_day=4000)), grpc.StatusCode.INVALID_ARGUMENT)
    reply = await hooked.wallet.SetAutoTopUp(auto(contractor))
    assert reply.wallet.auto_top_up.enabled and reply.wallet.auto_top_up.card_last4 == "4242"
    assert reply.wallet.auto_top_up.consented_at.seconds > 0
    # A one-off card top-up never turns it on; turning it off is the contractor's to do.
    off = await hooked.wallet.SetAutoTopUp(auto(contractor, enabled=False))
    assert not off.wallet.auto_top_up.enabled


async def test_twenty_concurrent_charges_crossing_the_threshold_fire_one_auto_top_up(hooked, smtp, contractor):
    await funded(hooked, contractor, cents=10_000)
    await save_card(hooked, contractor)
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000))
    await asyncio.gather(*(charge(hooked, contractor, 300) for _ in range(20)))  # 10,000 -> 4,000

    async def credited():
        rows = [r for r in await credits(hooked.db, contractor) if r["credit_source"] == "card"]
        return rows or None

    rows = await eventually(credited)
    await asyncio.sleep(1.0)
    assert [r["amount_cents"] for r in await credits(hooked.db, contractor) if r["credit_source"] == "card"] == [5000]
    assert [(t["state"], t["amount_cents"]) for t in await auto_top_ups(hooked, contractor)] == [("credited", 5000)]
    wallet = (await hooked.wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor))).wallet
    assert wallet.balance_cents == 9000 and not wallet.paused
    receipt = await eventually(lambda: _mail(smtp, f"{contractor}@example.com"))
    assert b"auto top-up" in receipt[0] and b"4242" in receipt[0]
    assert rows[0]["reference"].startswith("pi_")


def _text(raw: bytes) -> bytes:
    import email

    return email.message_from_bytes(raw).get_payload(decode=True) or b""


async def _mail(smtp, address, containing: bytes = b""):
    found = [_text(m) for m in smtp.to(address) if containing in _text(m) or containing in m]
    return found or None


async def test_a_burst_of_holds_triggers_it_too(hooked, contractor):
    await funded(hooked, contractor, cents=10_000)
    await save_card(hooked, contractor)
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000))
    for i in range(6):  # 6,000 held: available 4,000 while the balance is still 10,000
        await hooked.wallet.Reserve(pb.ReserveRequest(contractor_id=contractor, call_id=f"call-{i}",
                                                      amount_cents=1000))
    await eventually(lambda: _states(hooked, contractor, "credited"))


async def _states(stack, contractor, *wanted):
    rows = await auto_top_ups(stack, contractor)
    return rows if rows and all(r["state"] in wanted for r in rows) else None


async def test_the_daily_maximum_is_never_exceeded(hooked, smtp, contractor):
    await funded(hooked, contractor, cents=10_000)
    await save_card(hooked, contractor)
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000, per_day=5000))
    await charge(hooked, contractor, 6000)  # 4,000: one auto top-up of 5,000 (the whole day's maximum)
    await eventually(lambda: _states(hooked, contractor, "credited"))
    await charge(hooked, contractor, 6000)  # 3,000 again: another would exceed the day's 5,000
    await eventually(lambda: _mail(smtp, f"{contractor}@example.com", b"daily maximum"))
    assert len(await auto_top_ups(hooked, contractor)) == 1


async def test_three_declines_in_a_row_turn_it_off_and_each_emails(hooked, smtp, contractor):
    await funded(hooked, contractor, cents=10_000)
    await save_card(hooked, contractor, "declined_when_charged")
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000))
    for n in range(1, 4):
        await charge(hooked, contractor, 6000)  # below the threshold
        await eventually(lambda n=n: _count(hooked, contractor, "failed", n))
        if n < 3:  # back above it by hand, so the next fall is a new crossing
            await hooked.wallet.TopUp(pb.TopUpRequest(contractor_id=contractor, amount_cents=6000,
                                                      reason="cheque", payment_reference=f"chq-{contractor}-{n}",
                                                      idempotency_key=f"chq-{contractor}-{n}"))
    wallet = (await hooked.wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor))).wallet
    assert not wallet.auto_top_up.enabled and "declined" in wallet.auto_top_up.disabled_reason
    mails = await eventually(lambda: _mail(smtp, f"{contractor}@example.com", b"declined"))
    await eventually(lambda: _mail(smtp, f"{contractor}@example.com", b"turned auto top-up off"))
    assert len(mails) >= 2
    assert [r for r in await credits(hooked.db, contractor) if r["credit_source"] == "card"] == []


async def _count(stack, contractor, state, n):
    rows = [r for r in await auto_top_ups(stack, contractor) if r["state"] == state]
    return rows if len(rows) == n else None


async def test_a_payment_the_bank_wants_authenticated_is_not_retried_off_session(hooked, smtp, http, contractor):
    await funded(hooked, contractor, cents=10_000)
    await save_card(hooked, contractor)
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000))
    # localstripe cannot finish a 3-D Secure card setup (it has no SetupIntent authentication), so the saved card
    # becomes one whose bank asks for authentication on every charge, as a card whose bank changed its mind.
    await hooked.db.execute("UPDATE wallet.auto_top_ups SET payment_method_id = $2 WHERE contractor_id = $1",
                            contractor, hooked.stripe.card("3ds"))
    await charge(hooked, contractor, 6000)
    await eventually(lambda: _states(hooked, contractor, "requires_action"))
    mail = await eventually(lambda: _mail(smtp, f"{contractor}@example.com", b"confirm"))
    [held] = await auto_top_ups(hooked, contractor)
    # The link is the web app's page of this top-up (tests/web/test_finish_payment.py pays there).
    [link] = re.findall(rb"https?://\S+", mail[0])
    assert link.decode().endswith(f"/app/c/{contractor}/money/topups/{held['top_up_id']}")
    await asyncio.sleep(0.5)
    assert len(await auto_top_ups(hooked, contractor)) == 1  # no off-session retry
    assert await hooked.db.fetchval("SELECT attempts FROM wallet.top_ups WHERE contractor_id = $1", contractor) == 1
    # What that page needs to finish the payment goes to the contractor, and to nobody else.
    path = f"{hooked.gateway_url}/v1/wallets/{contractor}/topUps/{held['top_up_id']}"
    async with http.get(path, headers=contractor_headers(contractor)) as reply:
        mine = await reply.json()
    assert mine["topUp"]["state"] == "TOP_UP_STATE_REQUIRES_ACTION"
    assert mine["clientSecret"].startswith(held["payment_intent_id"] + "_secret")
    assert mine["publishableKey"] == "pk_test_callersync" and mine["paymentMethodId"].startswith("pm_")
    async with http.get(path, headers=operator_headers()) as reply:
        theirs = await reply.json()
    assert theirs["topUp"]["state"] == "TOP_UP_STATE_REQUIRES_ACTION" and theirs["clientSecret"] == ""


async def test_the_runaway_breaker_turns_it_off_after_three_in_an_hour(hooked, smtp, contractor):
    await funded(hooked, contractor, cents=10_000)
    await save_card(hooked, contractor)
    await hooked.wallet.SetAutoTopUp(auto(contractor, threshold=5000, amount=5000, per_day=100_000))
    for n in range(1, 4):
        await charge(hooked, contractor, 6000)
        await eventually(lambda n=n: _count(hooked, contractor, "credited", n))
    await charge(hooked, contractor, 6000)  # a fourth within the hour: the breaker, not a charge
    await eventually(lambda: _mail(smtp, f"{contractor}@example.com", b"auto top-up is off"))
    wallet = (await hooked.wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor))).wallet
    assert not wallet.auto_top_up.enabled and "within an hour" in wallet.auto_top_up.disabled_reason
    assert len(await auto_top_ups(hooked, contractor)) == 3
