"""The web app's settings, from CALLERSYNC_* variables of its own (the gateway's Settings stay as they are)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class WebConfig:
    # Who signs in as an operator: these addresses, compared without regard to case.
    operator_emails: frozenset[str] = frozenset()
    link_ttl_s: int = 15 * 60
    session_ttl_s: int = 12 * 3600
    # Where the links in emails point; empty: the gateway's own address (http://host:port).
    public_url: str = ""
    # Development only: the directory the local mail sink writes to; the app lists it at /app/dev/mail.
    dev_mail_dir: str = ""
    # Refunds above this many cents need a second operator to confirm an approval; refunds are asked within
    # this many days (both billing's rules, read from billing's variables, for the pages' words).
    second_approval_cents: int = 10_000
    refund_window_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebConfig:
        env = os.environ if env is None else env
        d = cls()
        emails = {e.strip().lower() for e in env.get("CALLERSYNC_OPERATOR_EMAILS", "").split(",") if e.strip()}

        def number(name: str, default: int) -> int:
            raw = env.get(name, "")
            try:
                return int(raw) if raw else default
            except ValueError:
                raise SystemExit(f"{name}={raw!r} is not an integer") from None

        return cls(
            operator_emails=frozenset(emails),
            link_ttl_s=number("CALLERSYNC_SIGNIN_LINK_TTL_S", d.link_ttl_s),
            session_ttl_s=number("CALLERSYNC_WEB_SESSION_TTL_S", d.session_ttl_s),
            public_url=env.get("CALLERSYNC_PUBLIC_URL", d.public_url).rstrip("/"),
            dev_mail_dir=env.get("CALLERSYNC_DEV_MAIL_DIR", d.dev_mail_dir),
            second_approval_cents=number("CALLERSYNC_REFUND_SECOND_APPROVAL_CENTS", d.second_approval_cents),
            refund_window_days=number("CALLERSYNC_REFUND_WINDOW_DAYS", d.refund_window_days),
        )
