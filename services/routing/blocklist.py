"""An operator's BlockCaller and UnblockCaller: the blocklist written, and every replica's copy of it dropped."""

from __future__ import annotations

from services.routing.directory import Directory, announce_write
from services.routing.live_state import Change, LiveState
from services.routing.records import BlockedCaller
from services.routing.storage import RoutingStore


class Blocklist:
    def __init__(self, store: RoutingStore, directory: Directory, live: LiveState) -> None:
        self._store = store
        self._directory = directory
        self._live = live

    async def block(self, caller_number: str, blocked_by: str, note: str) -> BlockedCaller:
        """Blocking twice is a no-op that returns the first entry."""
        blocked = await self._store.block(caller_number, "operator", blocked_by, note)
        await announce_write(self._directory, self._live, Change(blocklist=True))
        return blocked

    async def unblock(self, caller_number: str, unblocked_by: str, note: str) -> BlockedCaller:
        unblocked = await self._store.unblock(caller_number, unblocked_by, note)
        await announce_write(self._directory, self._live, Change(blocklist=True))
        return unblocked
