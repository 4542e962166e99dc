"""Group commit: concurrent requests that each need a transaction share one, so one commit (one WAL flush)
serves a whole batch. A lone request goes straight through; under load, requests queue while the previous
batches commit and are taken together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommitter(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        max_batch: int = 256,
        max_in_flight: int = 2,
        retry_alone: bool = True,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        # False where a batch fails only as a whole (a lost connection): retrying each alone would multiply
        # the wait for an outage by the batch size.
        self._retry_alone = retry_alone
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._dispatching = False
        self._tasks: set[asyncio.Task[None]] = set()  # strong references, so no batch is collected mid-flight

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._dispatching:
            self._dispatching = True
            self._spawn(self._dispatch())
        return await future

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self) -> None:
        try:
            while self._queue:
                await self._slots.acquire()
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                self._spawn(self._commit_in_slot(batch))
        finally:
            self._dispatching = False

    async def _commit_in_slot(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            await self._commit(batch)
        finally:
            self._slots.release()

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            try:
                results = await self._run_batch([item for item, _ in batch])
            except Exception:
                if len(batch) == 1 or not self._retry_alone:
                    raise
                # One poisoned request must not fail its neighbours: retry each alone.
                await asyncio.gather(*(self._commit([pair]) for pair in batch))
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except BaseException as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
