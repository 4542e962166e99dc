"""When a fact may claim to have happened: nothing is billed for a moment that has not come yet, and no price
is set for a moment before the platform priced anything.

- A finished call (its start and every leg's ring, answer and end) and a booking (the moment the AI agent
  booked it, `scheduled_at`) must not lie later than now plus the allowed clock skew (CALLERSYNC_CLOCK_SKEW_S,
  60 s): a leg "ending" 70 s from now is a clock or a forgery, and billing it would charge for time that
  has not been talked. Nor may a booking lie before CALLERSYNC_RATE_EARLIEST_S (below): no fee was in effect
  then. (A call that early finds no rate, and is refused for that.)
- An appointment (`appointment_at`, when the contractor is to show up) may lie in the future, but at most
  CALLERSYNC_APPOINTMENT_MAX_AHEAD_DAYS (400: a booking a year out, with slack) after the booking.
- A rate or booking fee may be back-dated (an operator fixing a missing price so unrated calls of the last
  hours find one) but not before CALLERSYNC_RATE_EARLIEST_S (2020-01-01, before any CallerSync call): a
  version in year 1 would silently price every call ever replayed. Prices already in effect are never
  rewritten anyway (ratecard.version_conflict). Scheduling far ahead stays allowed: it is replaceable until
  it takes effect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from services.runtime.errors import InvalidArgument
from services.runtime.timestamps import not_after

DAY_S = 86_400


@dataclasses.dataclass(frozen=True)
class FactLimits:
    """The three limits above (defaults and variables in services/billing/config.py)."""

    clock_skew_s: int
    appointment_max_ahead_days: int
    rate_earliest_s: int


def check_call(call: pb.FinishedCall, limits: FactLimits, now_s: float | None = None) -> None:
    latest = (time.time() if now_s is None else now_s) + limits.clock_skew_s
    why = "a finished call is rated only after it happened"
    not_after("started_at", call.started_at, latest, why)
    for i, leg in enumerate(call.legs):
        # validate_call already holds rang <= answered <= ended, so the end is the one that can run ahead.
        not_after(f"legs[{i}].ended_at", leg.ended_at, latest, why)


def check_booking(request: pb.RecordBookingRequest, limits: FactLimits, now_s: float | None = None) -> None:
    latest = (time.time() if now_s is None else now_s) + limits.clock_skew_s
    not_after("scheduled_at", request.scheduled_at, latest,
              "scheduled_at is the moment the appointment was booked, which has happened")
    if request.scheduled_at.seconds < limits.rate_earliest_s:
        # The fee lookup falls back to the first fee for a moment before every fee version, so without this a
        # booking "made" in 2019 would be charged.
        raise InvalidArgument(
            f"scheduled_at is before {_iso(limits.rate_earliest_s)}, before CallerSync priced anything; send the "
            "moment the appointment was booked",
            reason="TIMESTAMP_TOO_EARLY", field="scheduled_at",
        )
    if request.HasField("appointment_at"):
        horizon = request.scheduled_at.seconds + limits.appointment_max_ahead_days * DAY_S
        if request.appointment_at.seconds > horizon:
            raise InvalidArgument(
                f"appointment_at is more than {limits.appointment_max_ahead_days} days after scheduled_at; "
                "send the real appointment time",
                reason="TIMESTAMP_OUT_OF_RANGE", field="appointment_at",
            )


def check_effective_from(value: Timestamp, limits: FactLimits) -> None:
    if value.seconds < limits.rate_earliest_s:
        raise InvalidArgument(
            f"effective_from is before {_iso(limits.rate_earliest_s)}, the earliest a price may take effect; send "
            "the moment the new price takes over (a price may be back-dated, but not before CallerSync priced "
            "anything)",
            reason="EFFECTIVE_FROM_TOO_EARLY", field="effective_from",
        )


def _iso(unix_s: int) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).isoformat()
