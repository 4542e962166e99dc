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
