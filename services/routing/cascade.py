"""The cascade's decisions as plain functions: who is skipped and why, and the session a call carries
from one step to the next (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json

from services.routing import schedule
from services.routing.schedule import Profile
from services.runtime.money import dollars


class SkipReason(enum.StrEnum):
    """Why a candidate was passed over: the contract's SkipReason (mappers.SKIP_PB), stored in routing.steps by
    its lower-case value."""

    PAUSED = "paused"
    UNAFFORDABLE = "unaffordable"
    NO_WALLET = "no_wallet"
    OUTSIDE_HOURS = "outside_hours"
    DAILY_CAP = "daily_cap"
    MONTHLY_CAP = "monthly_cap"
    CONCURRENCY_CAP = "concurrency_cap"
    BUSY = "busy"


class WalletRefusal(enum.Enum):
    """Why the wallet will not pay for a call (GetRoutability's reason, or Reserve's refusal): clients.py reads
    it from the wallet's typed answer, never from a message."""

    PAUSED = enum.auto()
    NO_WALLET = enum.auto()
    INSUFFICIENT_AVAILABLE = enum.auto()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One claim of the ZIP as the cascade saw it when the call came in."""

    contractor_id: str
    position: str
    backup_rank: int
    mode: str


@dataclasses.dataclass(frozen=True)
class Skip:
    entry: Entry
    reason: SkipReason
    message: str


@dataclasses.dataclass(frozen=True)
class Counters:
    """Redis's counters for a candidate right now: calls ringing or connected, connected calls counted (billing's
    "facts" are something else: what a caller asserted about a call)."""

    live_calls: int = 0
    connected_today: int = 0
    connected_this_month: int = 0


def local_skip(profile: Profile, now: dt.datetime, counters: Counters) -> tuple[SkipReason, str] | None:
    """Routing's own reasons to pass a contractor over (the wallet's come after): hours, caps, busy."""
    if not schedule.within_hours(profile, now):
        local = schedule.local_time(profile, now)
        return SkipReason.OUTSIDE_HOURS, f"outside weekly hours: it is {local:%a %H:%M} in {profile.time_zone}"
    capped = schedule.cap_reached(profile, counters.connected_today, counters.connected_this_month)
    if capped == SkipReason.DAILY_CAP:
        return SkipReason.DAILY_CAP, (f"daily cap reached: {counters.connected_today} of "
                                      f"{profile.daily_max_connected_calls} connected calls today")
    if capped == SkipReason.MONTHLY_CAP:
        return SkipReason.MONTHLY_CAP, (f"monthly cap reached: {counters.connected_this_month} of "
                             f"{profile.monthly_max_connected_calls} connected calls this month")
    limit = profile.concurrency_limit()
    if limit is not None and counters.live_calls >= limit:
        return concurrency_skip(profile, counters.live_calls)
    return None


def concurrency_skip(profile: Profile, live_calls: int) -> tuple[SkipReason, str]:
    if profile.max_concurrent_calls:
        return SkipReason.CONCURRENCY_CAP, (f"concurrency cap reached: {live_calls} of {profile.max_concurrent_calls} "
                                 "calls ringing or connected")
    return SkipReason.BUSY, "busy: on, or being rung for, another call"


def wallet_skip(refusal: WalletRefusal, available_cents: int, balance_cents: int, threshold_cents: int,
                rate_cents: int) -> tuple[SkipReason, str]:
    """The wallet's refusal as a skip, with the figures."""
    if refusal is WalletRefusal.PAUSED:
        return SkipReason.PAUSED, f"paused: balance {dollars(balance_cents)} < threshold {dollars(threshold_cents)}"
    if refusal is WalletRefusal.NO_WALLET:
        return SkipReason.NO_WALLET, "no wallet yet: the first top-up creates it"
    return SkipReason.UNAFFORDABLE, f"available {dollars(available_cents)} < rate {dollars(rate_cents)}"


@dataclasses.dataclass
class Session:
    """A call's cascade, kept in Redis between steps so any replica can answer the next one."""

    call_id: str
    zip: str
    caller_number: str
    rate_cents: int
    order: list[Entry]
    step: int = 1
    # Contractors offered so far, in order; the last one holds the open reservation.
    offered: list[str] = dataclasses.field(default_factory=list)
    reservation_id: str = ""
    # Serialized response of each step, so a repeated request gets the same answer.
    responses: list[str] = dataclasses.field(default_factory=list)
    finished: bool = False

    def remaining(self) -> list[Entry]:
        """Claims not yet offered, after the last offered one, in cascade order."""
        if not self.offered:
            return list(self.order)
        ids = [e.contractor_id for e in self.order]
        last = self.offered[-1]
        start = ids.index(last) + 1 if last in ids else 0
        return [e for e in self.order[start:] if e.contractor_id not in self.offered]

    def dumps(self) -> str:
        # Not dataclasses.asdict: it deep-copies every field first (about a tenth of a RouteCall's Python time).
        data = dict(vars(self), order=[[e.contractor_id, e.position, e.backup_rank, e.mode] for e in self.order])
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Session:
        data = json.loads(raw)
        data["order"] = [Entry(*e) for e in data["order"]]
        return cls(**data)
