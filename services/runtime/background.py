"""The background loops every service runs (outbox relays, stream consumers, sweepers, gauges): one round, then
a wait, until stopped. A failed round is logged and the loop goes on (PostgreSQL, Redis or a peer being away
must not kill it); stopping cancels the loop and returns once it has stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("callersync.background")


STOP_WAIT_S = 5.0


async def within(awaitable: Awaitable[Any], seconds: float) -> bool:
    """Whether it finished within seconds (an error it finished with is raised). Not asyncio.wait_for: on a timeout that
    waits for the cancelled call to unwind, and a call stuck on a peer that never answers (a blocking read a
    client library does not give up on) never unwinds, which would hang a shutdown for good."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        return False
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return True


async def cancel_and_wait(task: asyncio.Task | None, wait_s: float = STOP_WAIT_S) -> None:
    """Cancels a background task and returns once it has stopped, or after wait_s with a warning: a stop must
    end even when the task is stuck where a cancellation does not reach."""
    if task is None:
        return
    task.cancel()
    if not await within(asyncio.gather(task, return_exceptions=True), wait_s):
        log.warning("%s did not stop within %.0f s of being cancelled; left behind", task.get_name(), wait_s)


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


class NudgedLoop:
    """A loop whose round runs every poll_ms, or at once when a write that left it work nudges it (the outbox
    relays, routing's pause-threshold relay)."""

    def __init__(self, name: str, round_: Callable[[], Awaitable[object]], poll_ms: int) -> None:
        self._waker = Waker(poll_ms / 1000.0)
        self._loop = Loop(name, round_, self._waker.wait)

    def nudge(self) -> None:
        self._waker.nudge()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()


class UntilDone:
    """One step run in the background until it succeeds (a re-read, a replay request), waiting twice as long
    after each failure up to max_retry_s, so a peer that is down for long is asked once a minute, not every two
    seconds. start() while it runs starts nothing more."""

    def __init__(self, name: str, step: Callable[[], Awaitable[Any]], *, retry_s: float = 2.0,
                 max_retry_s: float = 60.0, retry_on: tuple[type[Exception], ...] = (Exception,),
                 logger: logging.Logger = log) -> None:
        self.name = name
        self._step = step
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._retry_on = retry_on
        self._log = logger
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def result(self) -> Any:
        """What the running (or last) step returned; None if it never started."""
        return await self._task if self._task is not None else None

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> Any:
        delay_s = self._retry_s
        while True:
            try:
                return await self._step()
            except self._retry_on as err:
                reason = err.details() if hasattr(err, "details") and callable(err.details) else err
                self._log.warning("%s failed (%s); retrying in %g s", self.name, reason, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._max_retry_s)
