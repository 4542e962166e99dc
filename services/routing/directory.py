"""In-process cache of what RouteCall reads from PostgreSQL: each ZIP's claims with profiles and rate, and
the blocklist. Every write bumps a generation counter in Redis, which RouteCall reads in the round trip it
makes anyway; a changed generation drops the cache, so no replica routes on stale claims after a write."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from services.routing.storage import RoutingStore, ZipView

MAX_AGE_S = 60.0  # a safety net only: generations invalidate first
MAX_ZIPS = 200_000


class Directory:
    def __init__(self, store: RoutingStore) -> None:
        self._store = store
        self._zips: dict[str, tuple[ZipView, float]] = {}
        self._loading: dict[str, asyncio.Future[ZipView]] = {}
        self._gen_claims: bytes | None = None
        self._gen_blocklist: bytes | None = None
        self._blocked: set[str] | None = None
        self._blocked_loading: asyncio.Future[set[str]] | None = None
        self._zip_epoch = 0  # bumped whenever the ZIP copies are dropped
        self._epoch = 0  # bumped whenever the blocklist copy is dropped

    def observe(self, gen_claims: bytes, gen_blocklist: bytes) -> bool:
        """Drops what changed since the last look; True when the ZIP cache was dropped."""
        dropped = False
        if gen_claims != self._gen_claims:
            dropped = self._gen_claims is not None or bool(self._zips)
            self._gen_claims = gen_claims
            self._zips.clear()
            self._zip_epoch += 1
        if gen_blocklist != self._gen_blocklist:
            self._gen_blocklist = gen_blocklist
            self._blocked = None
            self._epoch += 1
        return dropped

    def forget(self) -> None:
        """After a local write: do not wait for the generation to come back."""
        self._zips.clear()
        self._zip_epoch += 1
        self._blocked = None
        self._epoch += 1

    def cached(self, zip_code: str) -> ZipView | None:
        hit = self._zips.get(zip_code)
        if hit is None:
            return None
        view, loaded_at = hit
        stale_rate = view.next_rate_change_at is not None and view.next_rate_change_at <= dt.datetime.now(dt.UTC)
        if stale_rate or time.monotonic() - loaded_at > MAX_AGE_S:
            del self._zips[zip_code]
            return None
        return view

    async def view(self, zip_code: str) -> ZipView:
        view = self.cached(zip_code)
        if view is not None:
            return view
        # One load per ZIP however many calls for it arrive at once.
        pending = self._loading.get(zip_code)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ZipView] = asyncio.get_running_loop().create_future()
        self._loading[zip_code] = future
        epoch = self._zip_epoch
        try:
            view = await self._store.zip_view(zip_code)
            if epoch == self._zip_epoch:  # a write during the load would make this copy stale
                if len(self._zips) >= MAX_ZIPS:
                    self._zips.clear()
                self._zips[zip_code] = (view, time.monotonic())
            future.set_result(view)
            return view
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            del self._loading[zip_code]

    async def is_blocked(self, caller_number: str) -> bool:
        blocked = self._blocked
        if blocked is None:
            epoch = self._epoch
            if self._blocked_loading is None:
                self._blocked_loading = asyncio.ensure_future(self._store.blocked_numbers())
            loading = self._blocked_loading
            try:
                blocked = await asyncio.shield(loading)
            finally:
                if self._blocked_loading is loading:
                    self._blocked_loading = None
            if epoch == self._epoch:  # not invalidated while loading
                self._blocked = blocked
        return caller_number in blocked
