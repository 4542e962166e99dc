"""The web app in real headless Chromium (Debian's chromium, driven by Playwright) against the whole stack
in-process: wallet, billing, routing, the gateway with its /app/ pages, Redis sessions and the SMTP sink that
receives the sign-in links."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import logging
import pathlib
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from callersync.billing.v1 import billing_pb2_grpc
from callersync.routing.v1 import routing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2_grpc
from services.gateway import access
from services.gateway.app import Gateway
from services.gateway.config import GatewayConfig
from services.gateway.media.resolver import MediaConfig
from services.gateway.web.config import WebConfig
from services.routing.app import build as build_routing
from services.routing.config import RoutingConfig
from services.runtime.background import within
from services.runtime.config import Settings
from tests.conftest import SmtpInbox, serving
from tests.payments.conftest import hooked, hooked_stripe  # noqa: F401  (fixtures: a wallet on localstripe)
from tests.web import fake_s3

log = logging.getLogger("tests.web")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = pathlib.Path(__file__).parent / "screenshots"
AXE = pathlib.Path(__file__).parent / "vendor" / "axe.min.js"
OPERATOR_EMAIL = "ops@callersync.test"
SECOND_OPERATOR_EMAIL = "ops2@callersync.test"
PHONE = {"width": 375, "height": 812}
SIGNING_KEY = "web-test-signing-key-32-bytes-long-enough"


@pytest.fixture(scope="session")
async def web_routing_target(settings: Settings, wallet_target: str, billing_target: str) -> AsyncIterator[str]:
    routing_settings = dataclasses.replace(settings, wallet_target=wallet_target, billing_target=billing_target)
    async with serving(await build_routing(routing_settings, 0, RoutingConfig(claim_idle_ms=300))) as target:
        yield target


@dataclasses.dataclass
class Stack:
    url: str
    gateway: Gateway
    wallet: Any
    billing: Any
    routing: Any
    smtp: SmtpInbox
    media_dir: pathlib.Path  # development recordings and transcripts the gateway serves (file:// URIs)
    s3_url: str  # the stand-in S3 (tests/web/fake_s3.py) the gateway presigns s3:// recordings for


@pytest.fixture(scope="session")
async def stack(settings: Settings, wallet_target: str, billing_target: str, web_routing_target: str,
                smtp: SmtpInbox, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    targets = {"wallet": wallet_target, "billing": billing_target, "routing": web_routing_target}
    media_dir = tmp_path_factory.mktemp("media")
    async with fake_s3.running() as s3_url:
        # s3:// recordings (the engine's, in tests/billing/calls.py) are presigned for the stand-in S3.
        media = MediaConfig(s3_access_key_id="test-key-id", s3_secret_access_key="test-secret",
                            s3_endpoint=s3_url, media_dir=str(media_dir),
                            allowed_hosts=frozenset({"media.example.com"}))
        gateway = Gateway(settings, targets=targets, media_config=media, config=GatewayConfig(jwt_secret=SIGNING_KEY),
                          web_config=WebConfig(operator_emails=frozenset({OPERATOR_EMAIL, SECOND_OPERATOR_EMAIL})))
        port = await gateway.start(0)
        async with grpc.aio.insecure_channel(wallet_target) as w, grpc.aio.insecure_channel(billing_target) as b, \
                grpc.aio.insecure_channel(web_routing_target) as r:
            yield Stack(f"http://127.0.0.1:{port}", gateway, wallet_pb2_grpc.WalletServiceStub(w),
                        billing_pb2_grpc.BillingServiceStub(b), routing_pb2_grpc.RoutingServiceStub(r), smtp,
                        media_dir, s3_url)
        await gateway.stop(1)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    manager = async_playwright()
    p = await manager.start()
    launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield launched
    await _close(launched)
    if not await _within(manager.__aexit__(), 15):
        # Seen about one session in five here: the driver waits on a chromium that does not exit. Killing the
        # driver (our child) closes chromium's pipe, and chromium exits with it.
        proc = getattr(getattr(manager._client, "_transport", None), "_proc", None)
        log.warning("the Playwright driver did not stop within 15 s; killing it (pid %s)", getattr(proc, "pid", "?"))
        if proc is not None and proc.returncode is None:
            proc.kill()


async def _within(awaitable: Any, seconds: float) -> bool:
    """Whether it finished in time; a close that failed is logged, not raised (a teardown goes on)."""
    try:
        return await within(awaitable, seconds)
    except Exception as err:
        log.warning("closing the browser failed: %r", err)
        return True


async def _close(closable: Any) -> None:
    """Closes a browser context or browser, giving up after 15 s: a teardown must not hang the session."""
    if not await _within(closable.close(), 15):
        log.warning("closing %r took over 15 s; left to the browser's own exit", closable)


@pytest.fixture
async def phone(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser profile (no cookies) with a 375 px wide touch screen: what a contractor on a roof has."""
    context = await browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await _close(context)


@pytest.fixture
async def desk(browser: Any) -> AsyncIterator[Any]:
    """A second, separate browser (an operator at a desk)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await _close(context)


def _links_in(raw: bytes) -> list[str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return re.findall(r"https?://\S+/app/signin/\S+", text)


async def emailed_link(smtp: SmtpInbox, address: str, seen: int) -> str:
    """The sign-in link in the first email to `address` after the `seen` ones already there."""
    for _ in range(100):
        mails = smtp.to(address)
        if len(mails) > seen:
            links = _links_in(mails[seen])
            assert links, mails[seen]
            return links[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no sign-in email reached {address}")


async def ask_refund(page: Any, reason: str = "System bug") -> None:
    """On the call page open in `page`: the reason picked, "Request a refund" pressed, back at its section."""
    await page.get_by_label(re.compile(reason)).check()
    await page.get_by_role("button", name=re.compile("Request a refund")).click()
    await page.wait_for_url(re.compile(".*#refund$"))


async def sign_in(page: Any, stack: Stack, address: str) -> None:
    """The whole flow a person goes through: the form, the email, the link, the confirm button."""
    seen = len(stack.smtp.to(address))
    await page.goto(f"{stack.url}/app/signin")
    await page.get_by_label("Email address").fill(address)
    await page.get_by_role("button", name="Email me a sign-in link").click()
    await page.get_by_text("a sign-in link is on its way").wait_for()
    link = await emailed_link(stack.smtp, address, seen)
    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r".*/app/(c/[^/]+|ops)/$"))


async def check(page: Any, name: str, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Saves a screenshot of the page and runs axe-core on it; fails on serious or critical violations.
    `exclude`: selectors of third-party widgets that are not ours (localstripe's stand-in card fields)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async (exclude) => await axe.run({include: [document], exclude: exclude.map(s => [s])}, "
        "{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})",
        list(exclude))
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, json.dumps([{"id": v["id"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"][:3]]}
                                for v in bad], indent=1)
    return result["violations"]


def assert_contractor_scope(gateway: Gateway, pages: set[str]) -> None:
    """The API calls these pages (handler names) made for a contractor's session: each made some, none reaches
    an operator-only method, none was refused."""
    by_rpc = {b.rpc_path: access.access_of(b) for b in gateway.routes.bindings}
    made = {name: calls for name, calls in gateway.web.api_calls.items() if name.startswith("contractor.")}
    assert set(made) == pages, set(made) ^ pages
    for name, calls in made.items():
        assert calls, f"{name} made no API call"
        for call in calls:
            assert by_rpc[call.rpc_path] is not access.Access.OPERATOR, (name, call)
            assert call.status < 400, (name, call)
