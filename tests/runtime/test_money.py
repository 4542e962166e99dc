"""Dollars are written once (services/runtime/money.py) and exactly: the web's typographic minus, the CSV's and
the forms' plain numbers are variants of it, never a float division."""

from __future__ import annotations

from services.gateway.web.csv_export import charge_rows, entry_rows
from services.gateway.web.render import money
from services.runtime.money import MINUS_SIGN, decimal_dollars, dollars

HUGE = 2**53 + 1  # a float holds no odd integer above 2**53: a division by 100 would round it


def test_pages_print_a_typographic_minus_and_the_rest_as_dollars_does():
    assert money("-150") == "\u2212$1.50" == dollars(-150, minus=MINUS_SIGN)
    assert money("123456789") == "$1,234,567.89" and money(None) == "$0.00"


def test_a_plain_amount_is_exact_signed_and_ungrouped():
    assert decimal_dollars(123456789) == "1234567.89"
    assert (decimal_dollars(5), decimal_dollars(-150), decimal_dollars(0)) == ("0.05", "-1.50", "0.00")
    assert decimal_dollars(HUGE) == "90071992547409.93"


def test_csv_cells_carry_plain_amounts():
    charge = {"amountCents": str(HUGE), "refundedCents": "-150", "kind": "CHARGE_KIND_CALL"}
    _, row = charge_rows([charge])
    assert (row[5], row[8]) == ("90071992547409.93", "-1.50")
    _, row = entry_rows([{"amountCents": "-2500", "balanceAfterCents": "7"}])
    assert row[3:5] == ["-25.00", "0.07"]
