"""The pause-threshold relay: pushes each contractor's threshold to the wallet from the outbox rows that
claim, mode and rate changes wrote in their own transactions. SetPauseThreshold is a set, so a push repeated
after a crash is harmless; pushes are computed at push time, so the wallet ends on the latest figure."""

from __future__ import annotations

import asyncio
import logging

from services.routing.clients import WalletClient
from services.routing.storage import RoutingStore
from services.runtime.background import NudgedLoop

log = logging.getLogger("callersync.routing")


class ThresholdRelay(NudgedLoop):
    def __init__(self, store: RoutingStore, wallet: WalletClient, poll_ms: int) -> None:
        self._store = store
        self._wallet = wallet
        super().__init__("pause-threshold relay", self.drain, poll_ms)

    async def push(self, contractor_id: str) -> int | None:
        """Pushes now if a push is due; the threshold pushed, or None when none was due."""

        async def send(threshold_cents: int) -> None:
            await self._wallet.set_pause_threshold(contractor_id, threshold_cents)

        return await self._store.push_threshold(contractor_id, send)

    async def push_now(self, contractor_id: str, computed_cents: int) -> int:
        """Pushes at once for a prompt answer; the outbox row keeps the push alive if the wallet is away. The
        threshold pushed, else computed_cents (what the relay will push)."""
        try:
            pushed = await self.push(contractor_id)
            return computed_cents if pushed is None else pushed
        except Exception as err:
            log.warning("pause threshold of %s not pushed yet (%s); the relay retries", contractor_id, err)
            self.nudge()
            return computed_cents

    async def drain(self) -> int:
        pushed = 0
        while contractors := await self._store.contractors_due_a_push(100):
            results = await asyncio.gather(*(self.push(c) for c in contractors), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            done = sum(result is not None for result in results)
            if not done:
                break  # all due rows are held by a concurrent push, which will mark them
            pushed += done
        return pushed
