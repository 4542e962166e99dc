"""Billing's events: built as BillingEvent messages into the outbox, relayed to one Redis stream."""

from __future__ import annotations

from callersync.billing.v1 import events_pb2
from services.runtime.outbox_rows import Row
from services.runtime.timestamps import set_stamp

EVENTS_STREAM = "callersync.billing.events"
TOPIC = "billing.event"

def payload(event: events_pb2.BillingEvent) -> bytes:
    """What the outbox row holds: the event without the id and time the row itself gives it."""
    return event.SerializeToString(deterministic=True)


def from_row(row: Row) -> events_pb2.BillingEvent:
    event = events_pb2.BillingEvent.FromString(bytes(row["payload"]))
    event.event_id = row["event_id"]
    set_stamp(event.occurred_at, row["created_at"])
    return event


def encode(row: Row) -> dict[str, bytes | int | str]:
    """One stream entry: the id consumers dedupe by, the kind for cheap filtering, the event itself."""
    event = from_row(row)
    return {"event_id": event.event_id, "type": event.WhichOneof("event") or "", "data": event.SerializeToString()}
