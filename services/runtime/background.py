"""The background loops every service runs (outbox relays, stream consumers, sweepers, gauges): one round, then
a wait, until stopped. A failed round is logged and the loop goes on (PostgreSQL, Redis or a peer being away
must not kill it); stopping cancels the loop and returns once it has stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("callersync.background")


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancels a background task and returns once it has stopped (a task's own errors are its to log)."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class Waker:
    """A wait of poll_s that a nudge cuts short: a write that left work for the loop says so. A nudge that comes
    while the loop is busy is kept, so the next wait returns at once."""

    def __init__(self, poll_s: float) -> None:
        self._poll_s = poll_s
        self._event = asyncio.Event()

    def nudge(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout=self._poll_s)
        except TimeoutError:
            pass
        self._event.clear()


class Loop:
    def __init__(self, name: str, round_: Callable[[], Awaitable[object]], wait: Callable[[], Awaitable[None]],
                 *, retry_s: float = 0.0, on_error: Callable[[Exception], None] = lambda err: None) -> None:
        """round_ runs, then wait; after a failed round, on_error sees the error and the loop also sleeps
        retry_s before the wait."""
        self.name = name
        self._round = round_
        self._wait = wait
        self._retry_s = retry_s
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._on_error(err)
                log.warning("%s: %s; will retry", self.name, err)
                await asyncio.sleep(self._retry_s)
            await self._wait()
