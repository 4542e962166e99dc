"""For tests whose checks count by calendar day: CI starts them at any wall-clock time, midnight included."""

from __future__ import annotations

import datetime as dt
import zoneinfo


def same_day_zone(first: dt.datetime, last: dt.datetime) -> str:
    """A time zone in which both instants fall on the same local date."""
    # Their midnights fall at 00:00, 04:00 or 05:00, and 15:00 UTC: a span shorter than four hours crosses at most
    # one of them.
    for name in ("UTC", "Asia/Tokyo", "America/New_York"):
        zone = zoneinfo.ZoneInfo(name)
        if first.astimezone(zone).date() == last.astimezone(zone).date():
            return name
    raise AssertionError(f"{first} and {last} share a date in none of these zones")
