"""Weekly hours and caps: when a contractor may be rung and how many calls they asked for (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import zoneinfo

from services.runtime.errors import InvalidArgument

MINUTES_PER_DAY = 1440


@dataclasses.dataclass(frozen=True)
class Window:
    weekday: int  # 1 Monday .. 7 Sunday, as datetime.isoweekday()
    start_minute: int
    end_minute: int


@dataclasses.dataclass(frozen=True)
class Profile:
    """What routing checks about a contractor before offering them a call."""

    contractor_id: str
    mode: str = "human"
    time_zone: str = "UTC"
    windows: tuple[Window, ...] = ()
    daily_max_connected_calls: int = 0
    monthly_max_connected_calls: int = 0
    max_concurrent_calls: int = 0

    @property
    def ai_mode(self) -> bool:
        return self.mode == "ai_agent"

    @property
    def counts_connected_calls(self) -> bool:
        """A daily or monthly cap: routing needs this contractor's connected-call counts."""
        return bool(self.daily_max_connected_calls or self.monthly_max_connected_calls)

    def concurrency_limit(self) -> int | None:
        """None for no limit: 0 means one at a time for a person and no limit for the AI."""
        if self.max_concurrent_calls:
            return self.max_concurrent_calls
        return None if self.ai_mode else 1


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def require_time_zone(name: str) -> str:
    if not name:
        raise InvalidArgument("time_zone is required: an IANA name such as America/Chicago", field="time_zone")
    try:
        # IANA names are short (the longest is 32 characters); a long one would reach the file system as a
        # path, whose OSError (name too long) must not read as the database being down.
        if len(name) > 64:
            raise ValueError(name)
        zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(f"time_zone {name!r} is not an IANA time zone name, e.g. America/Chicago",
                              field="time_zone") from None
    return name


# Every RouteCall checks each candidate's windows: ten a day is more than any business keeps, and bounds
# that work (and the stored profile) where non-overlap alone would allow 10,080.
MAX_WINDOWS = 70


def validate_windows(windows: list[Window]) -> tuple[Window, ...]:
    """At most MAX_WINDOWS; days 1-7, 0 <= start < end <= 1440, no two windows of a day overlapping."""
    if len(windows) > MAX_WINDOWS:
        raise InvalidArgument(f"weekly_hours holds {len(windows)} windows; at most {MAX_WINDOWS} (ten a day)",
                              field="weekly_hours")
    for i, w in enumerate(windows):
        field = f"weekly_hours[{i}]"
        if not 1 <= w.weekday <= 7:
            raise InvalidArgument(f"{field}.day must be a weekday (MONDAY..SUNDAY)", field=field)
        if not 0 <= w.start_minute < w.end_minute <= MINUTES_PER_DAY:
            raise InvalidArgument(
                f"{field} must satisfy 0 <= start_minute < end_minute <= 1440 (got {w.start_minute}-{w.end_minute});"
                " overnight hours are two windows", field=field)
    ordered = sorted(windows, key=lambda w: (w.weekday, w.start_minute))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.weekday == b.weekday and b.start_minute < a.end_minute:
            raise InvalidArgument(
                f"weekly_hours overlap on day {a.weekday}: {a.start_minute}-{a.end_minute} and "
                f"{b.start_minute}-{b.end_minute}; merge them into one window", field="weekly_hours")
    return tuple(ordered)


def local_time(profile: Profile, now: dt.datetime) -> dt.datetime:
    return now.astimezone(zone(profile.time_zone))


def within_hours(profile: Profile, now: dt.datetime) -> bool:
    """No windows means any hour of any day."""
    if not profile.windows:
        return True
    local = local_time(profile, now)
    minute = local.hour * 60 + local.minute
    day = local.isoweekday()
    return any(w.weekday == day and w.start_minute <= minute < w.end_minute for w in profile.windows)


def day_key(profile: Profile, moment: dt.datetime) -> str:
    """The local day a call counts against (caps count in the schedule's time zone)."""
    return local_time(profile, moment).strftime("%Y-%m-%d")


def month_key(profile: Profile, moment: dt.datetime) -> str:
    return local_time(profile, moment).strftime("%Y-%m")


def period_starts(profile: Profile, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The first instants of the local day and month the moment falls in (aware, in the schedule's zone)."""
    day_start = local_time(profile, moment).replace(hour=0, minute=0, second=0, microsecond=0)
    return day_start, day_start.replace(day=1)


def cap_reached(profile: Profile, connected_today: int, connected_this_month: int) -> str | None:
    """'daily_cap' or 'monthly_cap' when a ceiling the contractor set is reached; None otherwise."""
    if profile.daily_max_connected_calls and connected_today >= profile.daily_max_connected_calls:
        return "daily_cap"
    if profile.monthly_max_connected_calls and connected_this_month >= profile.monthly_max_connected_calls:
        return "monthly_cap"
    return None
