"""Consumes callersync.billing.events: rate and booking-fee changes (projection + pause thresholds), approved
spam refunds (blocklist), rated calls (connected-call counts for caps, freeing live slots). Each event is
applied once, by its event id, in the transaction that applies it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import grpc
from google.protobuf.message import DecodeError

from callersync.billing.v1 import events_pb2
from services.routing import schedule
from services.routing.clients import BillingClient
from services.routing.directory import Directory, announce
from services.routing.live_state import Change, LiveState, usage_key
from services.routing.storage import BillingUpdate, RoutingStore
from services.routing.streams import Entry
from services.runtime.background import UntilDone
from services.runtime.errors import DomainError
from services.runtime.timestamps import to_datetime
from services.runtime.validation import is_e164, is_zip

log = logging.getLogger("callersync.routing.billing_events")

STREAM = "callersync.billing.events"
GROUP = "routing"


def update_of(event: events_pb2.BillingEvent) -> BillingUpdate:
    kind = event.WhichOneof("event")
    if kind == "zip_rate_changed":
        e = event.zip_rate_changed
        return BillingUpdate("zip_rate", event.event_id, zip=e.zip, cents=e.rate_cents,
                           effective_from=to_datetime(e.effective_from))
    if kind == "booking_fee_changed":
        e = event.booking_fee_changed
        return BillingUpdate("booking_fee", event.event_id, cents=e.fee_cents,
                           effective_from=to_datetime(e.effective_from))
    if kind == "caller_block_requested":
        e = event.caller_block_requested
        return BillingUpdate("block", event.event_id, caller_number=e.caller_number, refund_case_id=e.refund_case_id,
                           actor=e.reviewer or "billing",
                           note=f"approved spam refund {e.refund_case_id} (call {e.call_id}, contractor "
                                f"{e.contractor_id})")
    if kind == "call_rated":
        e = event.call_rated
        return BillingUpdate("call_rated", event.event_id, call_id=e.call_id,
                           payer_contractor_id=e.payer_contractor_id if e.billable else "",
                           effective_from=to_datetime(e.started_at), rung_contractor_ids=tuple(e.rung_contractor_ids))
    return BillingUpdate("ignored", event.event_id)


def validate(update: BillingUpdate) -> None:
    """Refuses what would break the projection; such entries go to routing.rejected_events."""
    if update.event_id <= 0:
        raise ValueError("event_id must be positive")
    if update.kind == "zip_rate" and (not is_zip(update.zip) or update.cents <= 0):
        raise ValueError(f"zip_rate_changed needs a five-digit zip and a positive rate: {update.zip!r} {update.cents}")
    if update.kind == "booking_fee" and update.cents <= 0:
        raise ValueError("booking_fee_changed needs a positive fee")
    if update.kind == "block" and not is_e164(update.caller_number):
        raise ValueError(f"caller_block_requested needs an E.164 number: {update.caller_number!r}")
    if update.kind == "call_rated" and not update.call_id:
        raise ValueError("call_rated needs a call_id")


class BillingEventHandler:
    def __init__(self, store: RoutingStore, live: LiveState, directory: Directory,
                 nudge_thresholds: Callable[[], None]) -> None:
        self._store = store
        self._live = live
        self._directory = directory
        self._nudge_thresholds = nudge_thresholds

    async def __call__(self, entries: Sequence[Entry]) -> None:
        updates = []
        for entry_id, fields in entries:
            try:
                update = update_of(events_pb2.BillingEvent.FromString(fields[b"data"]))
                validate(update)
            except (KeyError, DecodeError, ValueError) as err:
                log.error("rejecting %s entry %s: %s", STREAM, entry_id, err)
                await self._store.reject_entry(
                    STREAM, entry_id.decode(), {k.decode(): v.hex() for k, v in fields.items()}, str(err))
                continue
            updates.append(update)
        if not updates:
            return
        await self._store.apply_billing_events(STREAM, updates)
        # The side effects below are idempotent, so they run for redeliveries too: a crash between the commit
        # above and here is repaired by the next delivery.
        await self._after_commit(updates)

    async def _after_commit(self, updates: list[BillingUpdate]) -> None:
        kinds = {f.kind for f in updates}
        change = Change(zips=tuple(sorted({f.zip for f in updates if f.kind == "zip_rate"})),
                        every_zip="booking_fee" in kinds, blocklist="block" in kinds)
        if change != Change():
            await announce(self._directory, self._live, change)
        if kinds & {"zip_rate", "booking_fee"}:
            self._nudge_thresholds()
        for update in updates:
            if update.kind != "call_rated":
                continue
            await self._live.end_calls(update.call_id, list(update.rung_contractor_ids))
            if update.payer_contractor_id:
                assert update.effective_from is not None  # update_of gives every call_rated update its started_at
                await self._refresh_usage(update.payer_contractor_id, update.effective_from)

    async def _refresh_usage(self, contractor_id: str, started_at: dt.datetime) -> None:
        """Writes the absolute counts (not increments), so applying an event twice counts it once."""
        profile = (await self._store.profile(contractor_id)).profile
        today, month = await self._store.connected_calls_between(contractor_id,
                                                                 *schedule.period_starts(profile, started_at))
        await self._live.set_usage({usage_key(contractor_id, schedule.day_key(profile, started_at)): today,
                                    usage_key(contractor_id, schedule.month_key(profile, started_at)): month})


# Replays reach back this far before the last event routing applied: an event committed late (its id taken
# before one routing already applied) or a clock difference between billing and routing is still covered.
REPLAY_MARGIN = dt.timedelta(hours=1)


class EventReplay:
    """After Redis lost the stream (routing had to create its consumer group: a first start, a FLUSHALL, a
    failover to an empty replica), asks billing to publish its events again from shortly before the last one
    routing applied, or all of them when it applied none. Spam blocks and rated calls (connected-call counts
    for caps) the lost stream held unread are not lost with it; the replayed events it did read are deduped by
    event id."""

    def __init__(self, store: RoutingStore, billing: BillingClient, *, retry_s: float = 2.0,
                 max_retry_s: float = 60.0) -> None:
        self._store = store
        self._billing = billing
        self._ask = UntilDone("asking billing to replay its events", self.replay_once, retry_s=retry_s,
                              max_retry_s=max_retry_s, retry_on=(DomainError, grpc.aio.AioRpcError), logger=log)

    def start(self) -> None:
        self._ask.start()

    async def done(self) -> int:
        """Waits for the running request, if any; how many events billing queued again."""
        return await self._ask.result() or 0

    async def stop(self) -> None:
        await self._ask.stop()

    async def replay_once(self) -> int:
        last = await self._store.last_event_applied(STREAM)
        since = last - REPLAY_MARGIN if last is not None else None
        queued = await self._billing.replay_events(since)
        log.info("billing queued %d events again (since %s)", queued, since.isoformat() if since else "the beginning")
        return queued
