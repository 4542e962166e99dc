"""The pause-threshold relay: pushes each contractor's threshold to the wallet from the outbox rows that
claim, mode and rate changes wrote in their own transactions. SetPauseThreshold is a set, so a push repeated
after a crash is harmless; pushes are computed at push time, so the wallet ends on the latest figure."""

from __future__ import annotations

import asyncio
import logging

from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.routing.storage import RoutingStore
from services.runtime.background import cancel_and_wait

log = logging.getLogger("callersync.routing.thresholds")


class ThresholdRelay:
    def __init__(self, store: RoutingStore, wallet: wallet_pb2_grpc.WalletServiceStub, poll_ms: int,
                 timeout_s: float = 5.0) -> None:
        self._store = store
        self._wallet = wallet
        self._poll_s = poll_ms / 1000.0
        self._timeout_s = timeout_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def push(self, contractor_id: str) -> int | None:
        """Pushes now if a push is due; the threshold pushed, or None when none was due."""

        async def send(threshold_cents: int) -> None:
            await self._wallet.SetPauseThreshold(
                wpb.SetPauseThresholdRequest(contractor_id=contractor_id, threshold_cents=threshold_cents),
                timeout=self._timeout_s)

        return await self._store.push_threshold(contractor_id, send)

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

    def nudge(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="routing-threshold-relay")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the wallet away: the rows wait in the outbox
                log.warning("pause-threshold relay: %s; will retry", err)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            except TimeoutError:
                pass
