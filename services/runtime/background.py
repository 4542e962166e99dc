"""The background loops every service runs (outbox relays, stream consumers, sweepers) stop the same way."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancels a background loop and returns once it has stopped (a loop's own errors are its to log)."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
