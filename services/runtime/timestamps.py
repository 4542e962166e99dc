"""protobuf Timestamps to and from aware datetimes. protobuf's own helpers (FromDatetime, ToDatetime,
GetCurrentTime) run 2-4 µs of Python each; these run 0.5-1.5, and the hot paths convert several per call
(a rated call: its start, the rate's start, the decision's time, the event's)."""

from __future__ import annotations

import datetime as dt
import time

from google.protobuf.timestamp_pb2 import Timestamp

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def set_stamp(field: Timestamp, value: dt.datetime) -> None:
    """As field.FromDatetime(value): a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    since = value - EPOCH
    field.seconds = since.days * 86400 + since.seconds
    field.nanos = since.microseconds * 1000


def stamp(value: dt.datetime | None) -> Timestamp:
    """An empty Timestamp for None (proto3 cannot tell it from the epoch; callers that care use HasField)."""
    out = Timestamp()
    if value is not None:
        set_stamp(out, value)
    return out


def now_stamp() -> Timestamp:
    ns = time.time_ns()
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def to_datetime(value: Timestamp) -> dt.datetime:
    """As value.ToDatetime(tzinfo=UTC): aware, in UTC, nanoseconds truncated to microseconds."""
    return EPOCH + dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
