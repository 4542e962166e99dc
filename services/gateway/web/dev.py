"""Development helpers for `callersync up`: a local mail sink (aiosmtpd) whose mail the app lists at
/app/dev/mail, and sign-in links for a demo contractor and an operator printed at start."""

from __future__ import annotations

import logging
import pathlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import grpc
import redis.asyncio as redis_asyncio

from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.gateway.tokens import Principal
from services.gateway.web.config import WebConfig
from services.gateway.web.sessions import WebSessions
from services.runtime.channels import client_channel
from services.runtime.config import Settings
from services.runtime.ports import free_port

log = logging.getLogger("callersync.gateway.web")
DEV_OPERATOR = "operator@callersync.local"
DEMO_CONTRACTOR = "demo-contractor"
DEMO_EMAIL = "demo@callersync.local"


class MailSink:
    """An SMTP server on a free loopback port that keeps every message as an .eml file in `folder`."""

    def __init__(self, folder: pathlib.Path) -> None:
        from aiosmtpd.controller import Controller

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd)
                name = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}.eml"
                (sink.folder / name).write_bytes(envelope.original_content or envelope.content)
                return "250 OK"

        # aiosmtpd connects to its own port to check it is up, so it needs the number before it starts.
        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> int:
        self._controller.start()
        return self.port

    def stop(self) -> None:
        self._controller.stop()


async def signin_links(env: Mapping[str, str], settings: Settings, base_url: str) -> list[tuple[str, str]]:
    """One-time links for the first operator and the demo contractor (its wallet created empty if missing; left
    out when the wallet refuses, e.g. under --tls where only routing may create a wallet)."""
    config = WebConfig.from_env(env)
    redis = redis_asyncio.Redis.from_url(env["CALLERSYNC_REDIS_URL"])
    sessions = WebSessions(redis, link_ttl_s=config.link_ttl_s, session_ttl_s=config.session_ttl_s)
    operator = sorted(config.operator_emails)[0] if config.operator_emails else DEV_OPERATOR
    try:
        links = [(f"operator {operator}",
                  f"{base_url}/app/signin/" + await sessions.issue_link(Principal(operator, "operator")))]
        if await _demo_contractor(settings):
            links.insert(0, (f"contractor {DEMO_CONTRACTOR} ({DEMO_EMAIL})", f"{base_url}/app/signin/"
                             + await sessions.issue_link(Principal(DEMO_EMAIL, "contractor", DEMO_CONTRACTOR))))
        return links
    finally:
        await redis.aclose()


async def _demo_contractor(settings: Settings) -> bool:
    channel = client_channel(settings.target_of("wallet"), "gateway", settings)
    try:
        wallet = wallet_pb2_grpc.WalletServiceStub(channel)
        try:
            await wallet.GetWallet(wpb.GetWalletRequest(contractor_id=DEMO_CONTRACTOR), timeout=5)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            # An empty wallet, no money: the call routing makes to set a pause line creates one.
            await wallet.SetPauseThreshold(
                wpb.SetPauseThresholdRequest(contractor_id=DEMO_CONTRACTOR, threshold_cents=0), timeout=5)
        await wallet.SetContactEmail(
            wpb.SetContactEmailRequest(contractor_id=DEMO_CONTRACTOR, email=DEMO_EMAIL), timeout=5)
        return True
    except grpc.aio.AioRpcError as err:
        log.info("no demo contractor: %s %s", err.code().name, err.details())
        return False
    finally:
        await channel.close()


def web_banner(env: Mapping[str, str], settings: Settings) -> str:
    """The lines `callersync up` prints about the web app."""
    import asyncio

    base_url = f"http://{settings.host}:{settings.gateway_port}"
    links = asyncio.run(signin_links(env, settings, base_url))
    mail = f" and read them at {base_url}/app/dev/mail" if env.get("CALLERSYNC_DEV_MAIL_DIR") else ""
    return (f"  web app: {base_url}/app/ (the links below work once, for 15 minutes; ask for more at "
            f"{base_url}/app/signin{mail})\n"
            + "\n".join(f"    sign in as {label}: {url}" for label, url in links))
