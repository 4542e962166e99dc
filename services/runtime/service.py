"""What the command line needs to know of a service (its schema, its migrations, how to build its server) and
what `callersync up` needs of the gateway: handed in by the command line, so the runtime imports no service."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

import asyncpg

from services.runtime.config import Settings
from services.runtime.db import migrate
from services.runtime.server import GrpcServer


@dataclasses.dataclass(frozen=True)
class ServiceDef:
    name: str
    schema: str
    migrations: pathlib.Path
    # Builds the server (pools, relays, servicer) on `port`; the server's cleanups release them.
    build: Callable[[Settings, int], Awaitable[GrpcServer]]


async def migrate_services(database_url: str, services: Iterable[ServiceDef]) -> None:
    """Each service's pending migrations, in the order given, over one connection."""
    conn = await asyncpg.connect(database_url)
    try:
        for service in services:
            await migrate(conn, service.schema, service.migrations)  # logs each migration it applies, once
    finally:
        await conn.close()


class Sink(Protocol):
    """A development server `up` starts and stops with the stack."""

    def start(self) -> int: ...

    def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class GatewayDef:
    # Polls the gateway at (host, port) for up to deadline_s: whether it answered healthy.
    wait_healthy: Callable[[str, int, float], bool]
    # Bearer tokens: whether CALLERSYNC_JWT_SECRET names the key; if not, `dev_secret` keeps one in the data dir
    # (which `callersync token` reads, told where by the stack file, with the issuer and audience).
    jwt_secret_configured: bool
    jwt_issuer: str
    jwt_audience: str
    dev_secret: Callable[[pathlib.Path], str]
    # Without an SMTP server: a local mail sink writing to a folder (started on a free port), and the operator
    # whose sign-in link `up` prints.
    mail_sink: Callable[[pathlib.Path], Sink]
    dev_operator: str
    # The lines `up` prints about the web app, given the children's environment.
    banner: Callable[[Mapping[str, str], Settings], str]
