"""In-process cache of what RouteCall reads from PostgreSQL: each ZIP's claims with profiles and rate, and
the blocklist. Every write bumps a generation counter in Redis (the written ZIP's own, or all ZIPs', or the
blocklist's), which RouteCall reads in the round trip it makes anyway; a changed generation drops that copy,
so no replica routes on stale claims after a write, and a claim on one ZIP leaves every other ZIP cached."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time

from services.routing.live_state import Change, LiveState
from services.routing.storage import RoutingStore, ZipView

log = logging.getLogger("callersync.routing")

MAX_AGE_S = 60.0  # a safety net only (a bump lost when Redis failed): generations invalidate first
MAX_ZIPS = 200_000


@dataclasses.dataclass(frozen=True)
class _Copy:
    view: ZipView
    loaded_at: float
    gen: bytes | None  # the ZIP's generation seen before the load: a later one means the copy may be stale


class Directory:
    def __init__(self, store: RoutingStore) -> None:
        self._store = store
        self._zips: dict[str, _Copy] = {}
        self._gens: dict[str, bytes] = {}  # each ZIP's generation as last seen
        self._loading: dict[str, asyncio.Future[ZipView]] = {}
        self._gen_claims: bytes | None = None
        self._gen_blocklist: bytes | None = None
        self._blocked: set[str] | None = None
        self._blocked_loading: asyncio.Future[set[str]] | None = None
        self._zip_epoch = 0  # bumped whenever ZIP copies are dropped
        self._epoch = 0  # bumped whenever the blocklist copy is dropped

    def observe(self, gen_claims: bytes, gen_blocklist: bytes, zip_code: str = "", gen_zip: bytes = b"0") -> bool:
        """Drops what changed since the last look; True when zip_code's copy (or every copy) was dropped."""
        dropped = False
        if gen_claims != self._gen_claims:
            dropped = self._gen_claims is not None or bool(self._zips)
            self._gen_claims = gen_claims
            self._drop_zips(None)
        if zip_code:
            copy = self._zips.get(zip_code)
            if copy is not None and copy.gen != gen_zip:
                self._drop_zips([zip_code])
                dropped = True
            self._gens[zip_code] = gen_zip
        if gen_blocklist != self._gen_blocklist:
            self._gen_blocklist = gen_blocklist
            self._blocked = None
            self._epoch += 1
        return dropped

    def forget(self, change: Change) -> None:
        """After a local write: do not wait for the generations to come back."""
        self._drop_zips(None if change.every_zip else change.zips)
        if change.blocklist:
            self._blocked = None
            self._epoch += 1

    def _drop_zips(self, zips: tuple[str, ...] | list[str] | None) -> None:
        """None: all of them."""
        if zips is None:
            self._zips.clear()
            self._gens.clear()
        else:
            for zip_code in zips:
                self._zips.pop(zip_code, None)
                self._gens.pop(zip_code, None)
        if zips is None or zips:
            self._zip_epoch += 1

    def cached(self, zip_code: str) -> ZipView | None:
        copy = self._zips.get(zip_code)
        if copy is None:
            return None
        view = copy.view
        stale_rate = view.next_rate_change_at is not None and view.next_rate_change_at <= dt.datetime.now(dt.UTC)
        if stale_rate or time.monotonic() - copy.loaded_at > MAX_AGE_S:
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
        epoch, gen = self._zip_epoch, self._gens.get(zip_code)
        try:
            view = await self._store.zip_view(zip_code)
            if epoch == self._zip_epoch:  # a write during the load would make this copy stale
                if len(self._zips) >= MAX_ZIPS:  # a crude bound: start over
                    self._zips.clear()
                self._zips[zip_code] = _Copy(view, time.monotonic(), gen)
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


async def announce(directory: Directory, live: LiveState, change: Change) -> None:
    """After a write: this replica's copies go at once, every other replica's at its next look."""
    directory.forget(change)
    await live.bump(change)


async def announce_write(directory: Directory, live: LiveState, change: Change) -> None:
    """announce, after an RPC's write: the write stands even when Redis is away."""
    try:
        await announce(directory, live, change)
    except Exception as err:  # the cache's 60 s age limit still bounds the staleness elsewhere
        log.warning("could not announce a routing change to other replicas: %s", err)
