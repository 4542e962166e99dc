"""One page-token format for every service, and the tokens billing handed out before it still work."""

import base64
import datetime as dt

import pytest

from services.runtime import paging
from services.runtime.errors import InvalidArgument
from services.runtime.money import dollars

AT = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


def test_positions_round_trip_with_text_and_integer_keys():
    assert paging.decode_position(paging.encode_position("charge-1", AT)) == (AT, "charge-1")
    assert paging.decode_position(paging.encode_position(42, AT), int) == (AT, 42)
    assert paging.decode_token(paging.encode_token("94103"), 1) == ["94103"]


def test_a_token_billing_issued_before_the_shared_format_is_still_read():
    old = base64.urlsafe_b64encode(f"charge-1\x1f{AT.isoformat()}".encode()).decode()
    assert paging.decode_position(old) == (AT, "charge-1")


@pytest.mark.parametrize("token", ["garbage", "!!!!", base64.urlsafe_b64encode(b"[1,2,3]").decode(),
                                   base64.urlsafe_b64encode(b'["not a moment","k"]').decode(),
                                   base64.urlsafe_b64encode(b"[true,false]").decode(),
                                   paging.encode_position("text key", AT)])
def test_any_other_token_is_invalid_argument(token):
    with pytest.raises(InvalidArgument):
        paging.decode_position(token, int)


def test_page_size_defaults_caps_and_refuses_negative():
    assert paging.page_size(0, 50, 500) == 50
    assert paging.page_size(9999, 50, 500) == 500
    with pytest.raises(InvalidArgument):
        paging.page_size(-1, 50, 500)


def test_dollars_are_exact_and_signed():
    assert dollars(123456789) == "$1,234,567.89"
    assert dollars(5) == "$0.05"
    assert dollars(-150) == "-$1.50"


def test_a_page_drops_the_extra_row_and_points_after_its_last_one():
    assert paging.page_of([1, 2, 3], 2, paging.encode_id) == ([1, 2], paging.encode_id(2))


def test_the_last_page_has_no_next_token():
    assert paging.page_of([1, 2], 2, paging.encode_id) == ([1, 2], "")
    assert paging.page_of([], 2, paging.encode_id) == ([], "")
