"""What routing refuses to project from billing's stream, checked with the same ZIP and E.164 rules as every RPC
(services/runtime/validation.py), without Redis or PostgreSQL."""

from __future__ import annotations

import pytest

from services.routing.billing_events import validate
from services.routing.storage import BillingUpdate


@pytest.mark.parametrize(("zip_code", "ok"), [("94103", True), ("9410", False), ("941034", False),
                                              ("\uff19\uff14\uff11\uff10\uff13", False),  # full-width digits
                                              ("\u0669\u0664\u0661\u0660\u0663", False)])  # Arabic-Indic digits
def test_a_rate_change_needs_an_ascii_five_digit_zip(zip_code, ok):
    update = BillingUpdate("zip_rate", 1, zip=zip_code, cents=4500)
    if ok:
        validate(update)
    else:
        with pytest.raises(ValueError, match="five-digit zip"):
            validate(update)


@pytest.mark.parametrize(("number", "ok"), [("+14155550123", True), ("+", False), ("+1 415 555 0123", False),
                                            ("+04155550123", False), ("14155550123", False)])
def test_a_block_needs_an_e164_caller_number(number, ok):
    update = BillingUpdate("block", 1, caller_number=number)
    if ok:
        validate(update)
    else:
        with pytest.raises(ValueError, match="E.164"):
            validate(update)


def test_prices_must_be_positive_and_ids_present():
    for update in (BillingUpdate("zip_rate", 1, zip="94103", cents=0), BillingUpdate("booking_fee", 1, cents=0),
                   BillingUpdate("call_rated", 1), BillingUpdate("ignored", 0)):
        with pytest.raises(ValueError):
            validate(update)
    validate(BillingUpdate("booking_fee", 1, cents=2500))
