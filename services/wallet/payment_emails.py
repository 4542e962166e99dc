"""The emails of money in, sent from the outbox (topic wallet.payment_email): receipts, declines, a payment the bank
wants authenticated, the daily maximum reached, and auto top-up turned off by the system."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from services.runtime.money import dollars
from services.runtime.outbox import Handler, Row

log = logging.getLogger("callersync.wallet.payment_emails")


def _card(data: dict[str, Any]) -> str:
    if data.get("card_last4"):
        return f"{str(data.get('card_brand') or 'card').title()} ending {data['card_last4']}"
    return "your card"


def subject_and_body(data: dict[str, Any]) -> tuple[str, str]:
    kind = data["kind"]
    if kind == "receipt":
        what = "auto top-up" if data.get("origin") == "auto" else "top-up"
        return (f"CallerSync receipt: {dollars(data['amount_cents'])} added to your wallet",
                f"Your {what} of {dollars(data['amount_cents'])} was charged to {_card(data)} and credited to your "
                f"CallerSync wallet.\n\nNew balance: {dollars(data['balance_cents'])}.\n"
                f"Top-up reference: {data['top_up_id']}.\n")
    if kind == "declined":
        body = (f"We tried to add {dollars(data['amount_cents'])} to your CallerSync wallet with your saved card, "
                f"but {data['reason']}.\n\n")
        if data.get("disabled"):
            body += ("That is the third decline in a row, so we turned auto top-up off: we will not try this card "
                     "again. Top up by hand, or save another card and turn auto top-up back on.\n")
        else:
            body += (f"Declines in a row: {data['declines']} (after 3 we turn auto top-up off). We will try again "
                     "the next time your balance falls below your threshold; you can also top up by hand.\n")
        return ("CallerSync: your auto top-up was declined", body)
    if kind == "authentication_required":
        return ("CallerSync: confirm your auto top-up",
                f"Your bank wants you to confirm the {dollars(data['amount_cents'])} auto top-up yourself "
                "(3-D Secure), which we cannot do while you are away, so we did not retry it.\n\n"
                f"Finish the payment here: {data['link']}\n")
    if kind == "daily_max":
        return ("CallerSync: auto top-up reached your daily maximum",
                f"Your balance fell below your auto top-up threshold, but another {dollars(data['amount_cents'])} "
                f"would take today's auto top-ups past the {dollars(data['max_per_day_cents'])} maximum you set "
                f"({dollars(data['charged_cents'])} so far), so we did not charge your card.\n\n"
                f"Balance: {dollars(data['balance_cents'])}. Top up by hand to keep receiving calls.\n")
    if kind.startswith("disabled_"):
        return ("CallerSync: auto top-up is off",
                f"We turned your auto top-up off because {data['detail']}. No more automatic charges will be made "
                "until you turn it back on.\n")
    raise ValueError(f"unknown payment email kind {kind!r}")


def payment_email(row: Row, sender: str) -> EmailMessage:
    payload = row["payload"]
    data = json.loads(payload) if isinstance(payload, str) else payload
    subject, body = subject_and_body(data)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = data["email"]
    msg["Subject"] = subject
    # Stable, so a resend after a crash between the SMTP accept and the outbox mark can be recognised.
    msg["Message-ID"] = f"<payment-{row['event_id']}@callersync>"
    msg.set_content(body)
    return msg


def payment_email_sender(host: str, port: int, sender: str) -> Handler:
    async def send(rows: Sequence[Row]) -> None:
        if not host:
            log.warning("CALLERSYNC_SMTP_HOST is not set; %d payment email(s) wait in the outbox", len(rows))
            raise RuntimeError("no SMTP server configured")
        for row in rows:
            msg = payment_email(row, sender)
            if not msg["To"]:
                continue  # nobody to tell (a card top-up started without an email)
            await aiosmtplib.send(msg, hostname=host, port=port, timeout=10)

    return send
