"""The wallet's rules as plain functions, without a server."""

import base64
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callersync.wallet.v1 import wallet_pb2 as wpb
from services.runtime import paging
from services.runtime.errors import InvalidArgument
from services.wallet import ledger, mappers, top_ups
from services.wallet.records import DONE, Outcome

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def test_an_open_reservation_past_its_expiry_reads_as_expired():
    assert ledger.reservation_state("open", NOW, NOW) == "expired"
    assert ledger.reservation_state("open", NOW + dt.timedelta(milliseconds=1), NOW) == "open"
    # Settled reservations keep their state whatever the clock says.
    assert ledger.reservation_state("captured", NOW - dt.timedelta(days=1), NOW) == "captured"
    assert ledger.reservation_state("released", NOW - dt.timedelta(days=1), NOW) == "released"


@pytest.mark.parametrize(
    ("found", "paused", "available", "amount", "reason"),
    [
        (False, False, 0, 100, "no_wallet"),
        (True, True, 10_000, 100, "paused"),
        (True, False, 99, 100, "insufficient_available"),
        (True, False, 100, 100, "routable"),
    ],
)
def test_routability_names_the_first_reason_a_contractor_cannot_take_a_call(found, paused, available, amount, reason):
    assert ledger.routability(found, paused, available, amount) == reason


HOLD_REFUSALS = {Outcome.PAUSED, Outcome.INSUFFICIENT_AVAILABLE, Outcome.CALL_RESERVED}


@pytest.mark.parametrize("outcome", sorted(set(Outcome) - set(DONE) - HOLD_REFUSALS))
def test_every_refusal_of_a_posting_is_typed_in_the_contract(outcome):
    op = ledger.EntryOp("charge", "c-1", 500, "k-1", b"", reservation_id="r-1", refund_of_entry_id=7)
    assert mappers.refusal(ledger.refusal(outcome, op, 400, 9).reason) != wpb.WALLET_REFUSAL_UNSPECIFIED


@pytest.mark.parametrize("outcome", sorted(HOLD_REFUSALS | {Outcome.NO_WALLET}))
def test_every_refusal_of_a_hold_is_typed_in_the_contract(outcome):
    refused = ledger.reserve_refusal(outcome, "c-1", "call-1", 50, 900, 1000, 100)
    assert mappers.refusal(refused.reason) != wpb.WALLET_REFUSAL_UNSPECIFIED


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_page_tokens_round_trip(entry_id):
    assert paging.decode_id(paging.encode_id(entry_id)) == entry_id


def test_a_page_token_the_wallet_issued_before_the_shared_format_is_still_read():
    assert paging.decode_id(base64.urlsafe_b64encode(b"e:1234").decode()) == 1234


@given(st.text(min_size=1))
def test_any_other_page_token_is_refused_with_invalid_argument_never_crashed_on(token):
    try:
        decoded = paging.decode_id(token)
    except InvalidArgument:
        return
    assert isinstance(decoded, int) and decoded > 0


def test_top_up_bounds_are_inclusive_and_the_maximum_is_opt_in():
    top_ups.validate_manual_credit("c", 2500, "ref", "key", "why", 1_000_000)
    top_ups.validate_manual_credit("c", 1_000_000, "ref", "key", "why", 1_000_000)
    top_ups.validate_manual_credit("c", 50_000_000, "ref", "key", "why", 0)  # 0: no operator maximum
    with pytest.raises(InvalidArgument):
        top_ups.validate_manual_credit("c", 2499, "ref", "key", "why", 1_000_000)
    with pytest.raises(InvalidArgument):
        top_ups.validate_manual_credit("c", 1_000_001, "ref", "key", "why", 1_000_000)
    with pytest.raises(InvalidArgument):
        top_ups.validate_manual_credit("c", 2500, "ref", "key", " ", 0)


def test_reservation_ttl_defaults_and_bounds():
    assert ledger.reservation_ttl_s(0, 3600) == 3600
    assert ledger.reservation_ttl_s(1, 3600) == 1
    assert ledger.reservation_ttl_s(86_400, 3600) == 86_400
    for bad in (-1, 86_401):
        with pytest.raises(InvalidArgument):
            ledger.reservation_ttl_s(bad, 3600)


def test_turning_an_alert_off_needs_no_email():
    ledger.validate_alert("c", 0, "")
    with pytest.raises(InvalidArgument):
        ledger.validate_alert("c", 100, "")
