"""ClaimZip and ReleaseZip: the claim written, every replica's copy of the ZIP dropped, and the contractor's new
pause threshold pushed to the wallet."""

from __future__ import annotations

from services.routing.directory import Directory, announce_write
from services.routing.live_state import Change, LiveState
from services.routing.rate_card import RateCard
from services.routing.storage import ClaimChange, RoutingStore
from services.routing.thresholds import ThresholdRelay


class ClaimDesk:
    def __init__(self, store: RoutingStore, directory: Directory, live: LiveState, rate_card: RateCard,
                 thresholds: ThresholdRelay, max_backups: int) -> None:
        self._store = store
        self._directory = directory
        self._live = live
        self._rate_card = rate_card
        self._thresholds = thresholds
        self._max_backups = max_backups

    async def claim(self, contractor_id: str, zip_code: str, position: str,
                    backup_rank: int) -> tuple[ClaimChange, int]:
        """The change and the pause threshold the wallet now holds. A ZIP must have a rate before it is claimed."""
        await self._rate_card.require_priced(zip_code)
        change = await self._store.claim(contractor_id, zip_code, position, backup_rank, self._max_backups)
        return change, await self._after(contractor_id, zip_code, change)

    async def release(self, contractor_id: str, zip_code: str) -> tuple[ClaimChange, int]:
        change = await self._store.release(contractor_id, zip_code)
        return change, await self._after(contractor_id, zip_code, change)

    async def _after(self, contractor_id: str, zip_code: str, change: ClaimChange) -> int:
        await announce_write(self._directory, self._live, Change(zips=(zip_code,)))
        return await self._thresholds.push_now(contractor_id, change.pause_threshold_cents)
