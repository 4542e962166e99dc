"""What the command line needs to know of a service: its schema, its migrations, how to build its server."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Awaitable, Callable, Iterable

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
