"""Real servers for the tests: PostgreSQL and Redis (embedded unless CALLERSYNC_DATABASE_URL /
CALLERSYNC_REDIS_URL name servers), a fresh database per session, services in-process on free ports."""

from __future__ import annotations

import os

# Tests start service processes from a process full of gRPC threads: grpc's fork handlers are of no use to
# a child that execs at once, and are a known source of crashes when they run mid-call.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import pathlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
import redis.asyncio as redis

from bench.common import free_port, with_database
from callersync.wallet.v1 import wallet_pb2_grpc
from services.billing.app import BILLING
from services.ops import SERVICES
from services.runtime.config import Settings
from services.runtime.db import migrate
from services.runtime.redis_pipe import RedisPipe
from services.wallet.app import WALLET
from services.wallet.config import WalletConfig


@dataclasses.dataclass
class Servers:
    admin_url: str  # a database on the server we may create other databases from
    redis_url: str
    data_dir: pathlib.Path


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    from services.runtime.embedded import EmbeddedPostgres, EmbeddedValkey

    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callersync-test-"))
    started = []
    db_url = os.environ.get("CALLERSYNC_DATABASE_URL", "")
    redis_url = os.environ.get("CALLERSYNC_REDIS_URL", "")
    if not db_url:
        pg = EmbeddedPostgres(data_dir)
        db_url = pg.start()
        started.append(pg)
    if not redis_url:
        vk = EmbeddedValkey(data_dir)
        redis_url = vk.start()
        started.append(vk)
    yield Servers(db_url, redis_url, data_dir)
    if not any(isinstance(s, EmbeddedPostgres) for s in started):
        asyncio.run(_drop(db_url, _created))  # a server we did not start keeps nothing of ours
    for server in reversed(started):
        server.stop()


_created: list[str] = []  # the databases fresh_database made this session


async def _drop(admin_url: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def empty_database(servers: Servers) -> str:
    """A new database of this session's (dropped at its end when the server is not ours), with no schema."""
    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    _created.append(name)
    conn = await asyncpg.connect(servers.admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(servers.admin_url, name)


async def fresh_database(servers: Servers) -> str:
    url = await empty_database(servers)
    conn = await asyncpg.connect(url)
    try:
        for service in SERVICES.values():
            await migrate(conn, service.schema, service.migrations)
    finally:
        await conn.close()
    return url


@pytest.fixture(scope="session")
async def database_url(servers: Servers) -> str:
    return await fresh_database(servers)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis_client(servers: Servers) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def redis_pipe(redis_client: redis.Redis) -> AsyncIterator[RedisPipe]:
    pipe = RedisPipe.like(redis_client)
    yield pipe
    await pipe.aclose()


class SmtpInbox:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[bytes] = []
        self.port = free_port()
        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                inbox.messages.append(envelope.content)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[bytes]:
        return [m for m in self.messages if f"To: {address}".encode() in m]


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    inbox.start()
    yield inbox
    inbox.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, servers: Servers, smtp: SmtpInbox) -> Settings:
    return dataclasses.replace(
        Settings(),
        database_url=database_url,
        redis_url=servers.redis_url,
        outbox_poll_ms=50,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        db_pool_size=6,
    )


@pytest.fixture(scope="session")
def wallet_config() -> WalletConfig:
    """The wallet's own knobs as the environment sets them (tests change some with dataclasses.replace)."""
    return WalletConfig.from_env()


@contextlib.asynccontextmanager
async def serving(server) -> AsyncIterator[str]:
    """An in-process server started on a free port: its target while the block runs, stopped after."""
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(1)


@pytest.fixture(scope="session")
async def wallet_target(settings: Settings) -> AsyncIterator[str]:
    async with serving(await WALLET.build(settings, 0)) as target:
        yield target


@pytest.fixture(scope="session")
def billing_settings(settings: Settings, wallet_target: str) -> Settings:
    return dataclasses.replace(settings, wallet_target=wallet_target)


@pytest.fixture(scope="session")
async def billing_target(billing_settings: Settings) -> AsyncIterator[str]:
    """Billing in-process on a free port, talking to the session's in-process wallet."""
    async with serving(await BILLING.build(billing_settings, 0)) as target:
        yield target


@pytest.fixture(scope="session")
async def wallet(wallet_target: str) -> AsyncIterator[wallet_pb2_grpc.WalletServiceStub]:
    async with grpc.aio.insecure_channel(wallet_target) as channel:
        yield wallet_pb2_grpc.WalletServiceStub(channel)


@pytest.fixture
def contractor() -> str:
    """A contractor id no other test uses, so tests share one database without interfering."""
    return f"ctr-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def spans():
    """Every span of the process into memory (the API allows one tracer provider per process, so this is
    session-wide). Servers built after it trace their client calls too; build fresh ones in tracing tests."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.runtime import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    telemetry.instrument_libraries()
    return exporter


def trace_of(exporter, root) -> list:
    """The finished spans of root's trace."""
    trace_id = root.get_span_context().trace_id
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def children(spans: list, parent) -> list:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def one(spans: list, name: str, kind):
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, f"{len(found)} {kind.name} spans named {name}: {sorted(s.name for s in spans)}"
    return found[0]
