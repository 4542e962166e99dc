"""The fast conversions agree with protobuf's own helpers on every kind of instant."""

import datetime as dt

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime.timestamps import now_stamp, set_stamp, stamp, to_datetime

INSTANTS = [
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 23, 17, 30, 0, 123_456, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 8, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    dt.datetime(2099, 12, 31, 23, 59, 59, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 23, 12, 0, 0, 5),  # naive: UTC, as FromDatetime takes it
]


@pytest.mark.parametrize("when", INSTANTS, ids=str)
def test_a_datetime_stamps_as_protobuf_stamps_it(when):
    theirs = Timestamp()
    theirs.FromDatetime(when)
    ours = Timestamp()
    set_stamp(ours, when)
    assert (ours.seconds, ours.nanos) == (theirs.seconds, theirs.nanos)
    assert stamp(when) == theirs


@pytest.mark.parametrize("seconds,nanos", [(0, 0), (-1, 999_999_999), (1_795_000_000, 123_456_789), (4_102_444_799, 1)])
def test_a_stamp_reads_back_as_protobuf_reads_it(seconds, nanos):
    ts = Timestamp(seconds=seconds, nanos=nanos)
    assert to_datetime(ts) == ts.ToDatetime(tzinfo=dt.UTC)
    assert to_datetime(ts).tzinfo is not None


def test_none_stamps_empty_and_now_is_now():
    assert stamp(None) == Timestamp()
    before = dt.datetime.now(dt.UTC)
    now = to_datetime(now_stamp())
    assert before - dt.timedelta(seconds=1) <= now <= dt.datetime.now(dt.UTC)


@pytest.mark.parametrize("seconds,nanos", [(2**62, 0), (-(2**62), 0), (253_402_300_800, 0), (-62_135_596_801, 0),
                                           (0, 2_000_000_000), (0, -1)])
def test_a_stamp_out_of_protobufs_range_is_the_callers_invalid_argument(seconds, nanos):
    from services.runtime.errors import InvalidArgument
    from services.runtime.timestamps import check, in_range

    ts = Timestamp(seconds=seconds, nanos=nanos)
    assert not in_range(ts)
    with pytest.raises(InvalidArgument) as info:
        check("as_of", ts)
    assert info.value.reason == "TIMESTAMP_OUT_OF_RANGE" and "as_of" in info.value.message
    if abs(seconds) > 10**12:
        with pytest.raises(InvalidArgument):
            to_datetime(ts)


def test_the_ends_of_protobufs_range_convert():
    first, last = Timestamp(seconds=-62_135_596_800), Timestamp(seconds=253_402_300_799, nanos=999_999_999)
    assert to_datetime(first) == dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    assert to_datetime(last) == dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
