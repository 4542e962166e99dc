"""Turns the wallet's outbox rows into the world outside: pause events on a Redis stream, alert emails by SMTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from callersync.wallet.v1 import events_pb2
from services.runtime.money import dollars
from services.runtime.outbox import Handler, Row
from services.runtime.timestamps import stamp

log = logging.getLogger("callersync.wallet.alerts")

EVENTS_STREAM = "callersync.wallet.events"


def _payload(row: Row) -> dict:
    payload = row["payload"]
    return json.loads(payload) if isinstance(payload, str) else payload


def pause_event(row: Row) -> events_pb2.WalletEvent:
    data = _payload(row)
    occurred_at = stamp(row["created_at"])
    return events_pb2.WalletEvent(
        event_id=row["event_id"],
        occurred_at=occurred_at,
        pause_changed=events_pb2.PauseChanged(
            contractor_id=data["contractor_id"],
            paused=data["paused"],
            balance_cents=data["balance_cents"],
            pause_threshold_cents=data["pause_threshold_cents"],
        ),
    )


def encode_pause(row: Row) -> dict[str, bytes | int | str]:
    event = pause_event(row)
    return {"event_id": event.event_id, "type": "pause_changed", "data": event.SerializeToString()}


def alert_email(row: Row, sender: str) -> EmailMessage:
    data = _payload(row)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = data["email"]
    msg["Subject"] = f"CallerSync: your wallet balance is below {dollars(data['alert_threshold_cents'])}"
    # A stable Message-ID: if a crash between the SMTP send and the outbox mark causes a resend,
    # mail systems can recognise the duplicate.
    msg["Message-ID"] = f"<low-balance-{row['event_id']}@callersync>"
    msg.set_content(
        f"Your CallerSync wallet balance is {dollars(data['balance_cents'])}, below the "
        f"{dollars(data['alert_threshold_cents'])} alert you set.\n\n"
        "Top up to keep receiving calls: when the balance falls below the rate of your most expensive ZIP, "
        "routing pauses until you do. You will get this email once per drop below your threshold.\n"
    )
    return msg


def email_sender(host: str, port: int, sender: str) -> Handler:
    """Sends each row's email; the relay marks the row sent only after the SMTP server accepted it."""

    async def send(rows: Sequence[Row]) -> None:
        if not host:
            log.warning("CALLERSYNC_SMTP_HOST is not set; %d low-balance email(s) wait in the outbox", len(rows))
            raise RuntimeError("no SMTP server configured")
        for row in rows:
            await aiosmtplib.send(alert_email(row, sender), hostname=host, port=port, timeout=10)

    return send
