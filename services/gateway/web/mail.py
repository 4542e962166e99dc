"""The sign-in email: one link per account the address opens (a person may run several contractor accounts)."""

from __future__ import annotations

import logging
from email.message import EmailMessage

import aiosmtplib

log = logging.getLogger("callersync.gateway.web")


def signin_email(sender: str, to: str, links: list[tuple[str, str]], ttl_s: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Your CallerSync sign-in link"
    lines = [f"  {label}: {url}" for label, url in links]
    msg.set_content(
        "Open a link below to sign in to CallerSync. Each link works once, for "
        f"{ttl_s // 60} minutes.\n\n" + "\n".join(lines) + "\n\nIf you did not ask to sign in, ignore this email.\n"
    )
    return msg


async def send(host: str, port: int, message: EmailMessage) -> bool:
    if not host:
        log.warning("CALLERSYNC_SMTP_HOST is not set: a sign-in email to %s was not sent", message["To"])
        return False
    await aiosmtplib.send(message, hostname=host, port=port, timeout=10)
    return True
