"""protobuf Timestamps to and from aware datetimes. protobuf's own helpers (FromDatetime, ToDatetime,
GetCurrentTime) run 2-4 µs of Python each; these run 0.5-1.5, and the hot paths convert several per call
(a rated call: its start, the rate's start, the decision's time, the event's)."""

from __future__ import annotations

import datetime as dt
import time

from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime.errors import InvalidArgument

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
    """As value.ToDatetime(tzinfo=UTC): aware, in UTC, nanoseconds truncated to microseconds. A stamp outside
    protobuf's range is the caller's INVALID_ARGUMENT (the interceptor checks requests first; this is the net)."""
    try:
        return EPOCH + dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
    except OverflowError:
        check("a Timestamp", value)
        raise


# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999


def in_range(value: Timestamp) -> bool:
    return MIN_SECONDS <= value.seconds <= MAX_SECONDS and 0 <= value.nanos <= MAX_NANOS


def check(field: str, value: Timestamp) -> None:
    """Refuses a Timestamp outside protobuf's range (year 1 to 9999, nanos 0 to 999,999,999): datetime cannot
    hold it, and a caller that sends one has a bug to hear about, not an INTERNAL."""
    if not in_range(value):
        raise InvalidArgument(
            f"{field} is not a valid Timestamp (seconds {value.seconds}, nanos {value.nanos}): seconds must lie in "
            f"year 1 to 9999 ({MIN_SECONDS}..{MAX_SECONDS}) and nanos in 0..{MAX_NANOS}",
            reason="TIMESTAMP_OUT_OF_RANGE", field=field,
        )


def not_after(field: str, value: Timestamp, limit_s: float, what: str) -> None:
    """Refuses a fact stamped later than `limit_s` (Unix seconds: now plus the allowed clock skew)."""
    if value.seconds + value.nanos / 1e9 > limit_s:
        ahead = value.seconds - int(time.time())
        raise InvalidArgument(
            f"{field} is {ahead} s in the future; {what}. Check the sender's clock (NTP) and send the real moment",
            reason="TIMESTAMP_IN_FUTURE", field=field,
        )
