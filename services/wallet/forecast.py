"""Spend per day and the runway: how long the balance lasts above the pause line at recent spend.

The forecast is arithmetic on the ledger, no model: the average of the last `lookback_days` of spend (captures
and charges, minus refunds credited in the same days), and the headroom above the pause line divided by it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from services.runtime.errors import InvalidArgument

DEFAULT_LOOKBACK_DAYS = 14
DEFAULT_HISTORY_DAYS = 30
MAX_DAYS = 90


@dataclasses.dataclass(frozen=True)
class Day:
    date: dt.date
    spent_cents: int = 0
    debit_count: int = 0
    refunded_cents: int = 0
    topped_up_cents: int = 0


@dataclasses.dataclass(frozen=True)
class Forecast:
    lookback_days: int
    lookback_spent_cents: int
    average_daily_spend_cents: int
    headroom_cents: int
    runway_days: int | None
    days: list[Day]


def days_asked(name: str, value: int, default: int) -> int:
    if value == 0:
        return default
    if not 1 <= value <= MAX_DAYS:
        raise InvalidArgument(f"{name} must be 1 to {MAX_DAYS} days (0 for {default}); got {value}", field=name)
    return value


def first_day(today: dt.date, lookback_days: int, history_days: int) -> dt.date:
    """The oldest day either window reaches: storage reads entries from this UTC midnight on."""
    return today - dt.timedelta(days=max(lookback_days, history_days) - 1)


def forecast(
    balance_cents: int,
    pause_threshold_cents: int,
    paused: bool,
    activity: Mapping[dt.date, Day],
    today: dt.date,
    lookback_days: int,
    history_days: int,
) -> Forecast:
    """`activity` holds the days with entries; days without any count as no spend.

    The lookback window ends with today, so a quiet morning pulls the average down a little: the figure is
    "at your last 14 days' spend", as the dashboard says.
    """
    window = [activity.get(today - dt.timedelta(days=n), Day(today - dt.timedelta(days=n)))
              for n in range(lookback_days)]
    spent = max(0, sum(d.spent_cents - d.refunded_cents for d in window))
    average = spent // lookback_days
    headroom = balance_cents - pause_threshold_cents
    runway = None if paused or average <= 0 else max(0, headroom) // average
    history = [activity.get(today - dt.timedelta(days=n), Day(today - dt.timedelta(days=n)))
               for n in reversed(range(history_days))]
    return Forecast(lookback_days, spent, average, headroom, runway, history)
