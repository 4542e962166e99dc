"""Bad input gets a clear status and a message a person can act on, and writes nothing."""

import grpc
import pytest

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.wallet.support import balance, charge, expect_error, ledger, top_up

INVALID = grpc.StatusCode.INVALID_ARGUMENT

BAD_TOP_UPS = {
    "negative": (dict(amount_cents=-5000), "at least 2500"),
    "zero": (dict(amount_cents=0), "at least 2500"),
    "below the $25 minimum": (dict(amount_cents=2499), "2500"),
    "overflowing int64": (dict(amount_cents=2**63 - 1), "at most 100000000000"),
    "no reason": (dict(reason=""), "reason"),
    "a blank reason": (dict(reason="   "), "reason"),
    "a card PaymentIntent as the reference": (dict(payment_reference="pi_123"), "card"),
    "missing idempotency key": (dict(idempotency_key=""), "idempotency_key"),
    "missing payment reference": (dict(payment_reference=""), "payment_reference"),
    "control characters in the id": (dict(contractor_id="ctr\x00x"), "contractor_id"),
    "an id longer than 128 characters": (dict(contractor_id="c" * 129), "contractor_id"),
}


@pytest.mark.parametrize("case", BAD_TOP_UPS, ids=list(BAD_TOP_UPS))
async def test_a_bad_top_up_is_refused_and_writes_nothing(wallet, db, contractor, case):
    fields, mentions = BAD_TOP_UPS[case]
    request = dict(contractor_id=contractor, amount_cents=5000, payment_reference="pay-1", idempotency_key="k-1",
                   reason="cheque received")
    request.update(fields)
    err = await expect_error(wallet.TopUp(pb.TopUpRequest(**request)), INVALID)
    assert mentions in err.details()
    assert await ledger(db, contractor) == (None, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM wallet.wallets WHERE contractor_id = $1", contractor) == 0


async def test_money_for_an_unknown_wallet_is_not_found(wallet, db, contractor):
    err = await expect_error(charge(wallet, contractor, 2500), grpc.StatusCode.NOT_FOUND)
    assert contractor in err.details()
    await expect_error(wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor)), grpc.StatusCode.NOT_FOUND)
    await expect_error(
        wallet.Reserve(pb.ReserveRequest(contractor_id=contractor, call_id="c1", amount_cents=100)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        wallet.ListEntries(pb.ListEntriesRequest(contractor_id=contractor)), grpc.StatusCode.NOT_FOUND
    )
    assert await ledger(db, contractor) == (None, 0, 0)


@pytest.mark.parametrize("cents", [-1, 0, 2**63 - 1])
async def test_charge_and_reserve_refuse_impossible_amounts(wallet, db, contractor, cents):
    await top_up(wallet, contractor, 5000)
    await expect_error(charge(wallet, contractor, cents), INVALID)
    await expect_error(
        wallet.Reserve(pb.ReserveRequest(contractor_id=contractor, call_id="c1", amount_cents=cents)), INVALID
    )
    assert await ledger(db, contractor) == (5000, 1, 5000)
    assert (await balance(wallet, contractor)).reserved_cents == 0


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "sp ace@example.com", "x@.com"])
async def test_a_malformed_alert_email_is_refused(wallet, db, contractor, email):
    await top_up(wallet, contractor, 5000)
    err = await expect_error(
        wallet.SetLowBalanceAlert(
            pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=3000, email=email)
        ),
        INVALID,
    )
    assert "email" in err.details()
    alert = (await balance(wallet, contractor)).low_balance_alert
    assert (alert.threshold_cents, alert.email) == (0, "")


@pytest.mark.parametrize("reservation_id", ["", "not-a-uuid", "123"])
async def test_capture_and_release_refuse_malformed_reservation_ids(wallet, reservation_id):
    await expect_error(wallet.Capture(pb.CaptureRequest(reservation_id=reservation_id, amount_cents=100)), INVALID)
    await expect_error(wallet.Release(pb.ReleaseRequest(reservation_id=reservation_id)), INVALID)


async def test_an_unknown_reservation_is_not_found(wallet):
    unknown = "00000000-0000-4000-8000-000000000000"
    await expect_error(wallet.Capture(pb.CaptureRequest(reservation_id=unknown, amount_cents=100)),
                       grpc.StatusCode.NOT_FOUND)
    await expect_error(wallet.Release(pb.ReleaseRequest(reservation_id=unknown)), grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("token", ["garbage", "AAAA", "eyJ4IjoxfQ"])
async def test_a_forged_page_token_is_refused(wallet, contractor, token):
    await top_up(wallet, contractor, 5000)
    err = await expect_error(
        wallet.ListEntries(pb.ListEntriesRequest(contractor_id=contractor, page_token=token)), INVALID
    )
    assert "page_token" in err.details()


async def test_negative_page_size_and_threshold_are_refused(wallet, contractor):
    await top_up(wallet, contractor, 5000)
    await expect_error(wallet.ListEntries(pb.ListEntriesRequest(contractor_id=contractor, page_size=-1)), INVALID)
    await expect_error(
        wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor, threshold_cents=-1)), INVALID
    )
    assert (await balance(wallet, contractor)).pause_threshold_cents == 0


async def test_a_routability_batch_must_name_contractors(wallet):
    await expect_error(wallet.GetRoutability(pb.GetRoutabilityRequest(amount_cents=100)), INVALID)
    await expect_error(
        wallet.GetRoutability(pb.GetRoutabilityRequest(contractor_ids=["a"] * 1001, amount_cents=100)), INVALID
    )


LONG = "x" * (64 * 1024)


async def _short_refusal(call, code=INVALID):
    err = await expect_error(call, code)
    # The whole status rides in HTTP/2 trailers, which a client refuses past 16 KiB (it would then see
    # RESOURCE_EXHAUSTED, a code our clients retry): an echoed value is cut to a prefix and its size.
    assert len(err.details()) < 1200, len(err.details())
    assert sum(len(k) + len(v) for k, v in err.trailing_metadata()) < 8 * 1024
    return err


async def test_64k_values_are_refused_with_a_short_message(wallet, db, contractor):
    await top_up(wallet, contractor, 5000)
    err = await _short_refusal(wallet.SetLowBalanceAlert(
        pb.SetLowBalanceAlertRequest(contractor_id=contractor, threshold_cents=3000, email=LONG + "@example.com")))
    assert "email" in err.details() and "bytes)" in err.details()
    await _short_refusal(wallet.Capture(pb.CaptureRequest(reservation_id=LONG, amount_cents=100)))
    await _short_refusal(wallet.TopUp(pb.TopUpRequest(contractor_id=contractor, amount_cents=5000,
                                                      payment_reference=LONG, idempotency_key="k-long")))
    await _short_refusal(wallet.TopUp(pb.TopUpRequest(contractor_id=LONG, amount_cents=5000,
                                                      payment_reference="p", idempotency_key="k-long")))
    await _short_refusal(wallet.GetWallet(pb.GetWalletRequest(contractor_id=LONG)))
    await _short_refusal(wallet.ListEntries(pb.ListEntriesRequest(contractor_id=contractor, page_token=LONG)))
    assert await ledger(db, contractor) == (5000, 1, 5000)


async def test_every_reply_names_its_request_id(wallet, contractor):
    await top_up(wallet, contractor, 5000)
    call = wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor))
    await call
    ok_id = dict(await call.trailing_metadata())["x-request-id"]
    err = await expect_error(wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor + "-none")),
                             grpc.StatusCode.NOT_FOUND)
    refused_id = dict(err.trailing_metadata())["x-request-id"]
    assert ok_id and refused_id and ok_id != refused_id
