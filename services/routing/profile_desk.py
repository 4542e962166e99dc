"""A contractor's routing profile (mode, schedule, caps): each change dropped from every replica's copy of the
ZIPs they claim, a mode change's pause threshold pushed, and the profile read with this period's connected calls."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence

from services.routing import schedule
from services.routing.directory import Directory, announce_write
from services.routing.live_state import Change, LiveState
from services.routing.records import StoredProfile
from services.routing.schedule import Window
from services.routing.storage import RoutingStore
from services.routing.thresholds import ThresholdRelay


@dataclasses.dataclass(frozen=True)
class ProfileUsage:
    """A profile with the connected calls its caps count: in the local day and the local month."""

    stored: StoredProfile
    connected_today: int
    connected_this_month: int


class ProfileDesk:
    def __init__(self, store: RoutingStore, directory: Directory, live: LiveState,
                 thresholds: ThresholdRelay) -> None:
        self._store = store
        self._directory = directory
        self._live = live
        self._thresholds = thresholds

    async def set_mode(self, contractor_id: str, mode: str) -> ProfileUsage:
        """AI mode raises the pause threshold to the booking fee, so the wallet hears of it at once."""
        row = await self._store.update_profile(contractor_id, mode=mode)
        await self._changed(contractor_id)
        await self._thresholds.push_now(contractor_id, row.pause_threshold_cents)
        return await self.profile(contractor_id)

    async def set_schedule(self, contractor_id: str, time_zone: str,
                           windows: Sequence[Window]) -> ProfileUsage:
        row = await self._store.update_profile(
            contractor_id, time_zone=time_zone,
            weekly_hours=json.dumps([[w.weekday, w.start_minute, w.end_minute] for w in windows]))
        await self._changed(contractor_id)
        return await self.profile(contractor_id, row)

    async def set_caps(self, contractor_id: str, daily_max: int, monthly_max: int,
                       max_concurrent: int) -> ProfileUsage:
        """0 removes a ceiling."""
        row = await self._store.update_profile(
            contractor_id, daily_max_connected_calls=daily_max, monthly_max_connected_calls=monthly_max,
            max_concurrent_calls=max_concurrent)
        await self._changed(contractor_id)
        return await self.profile(contractor_id, row)

    async def profile(self, contractor_id: str, stored: StoredProfile | None = None) -> ProfileUsage:
        stored = stored if stored is not None else await self._store.profile(contractor_id)
        today, month = await self._store.connected_calls_between(
            contractor_id, *schedule.period_starts(stored.profile, dt.datetime.now(dt.UTC)))
        return ProfileUsage(stored, today, month)

    async def _changed(self, contractor_id: str) -> None:
        """A contractor's profile is part of the view of every ZIP they claim."""
        zips = tuple(await self._store.claimed_zips(contractor_id))
        await announce_write(self._directory, self._live, Change(zips=zips))
