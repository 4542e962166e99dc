"""What the command line needs to know of a service: its schema, its migrations, how to build its server."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Awaitable, Callable

from services.runtime.config import Settings
from services.runtime.server import GrpcServer


@dataclasses.dataclass(frozen=True)
class ServiceDef:
    name: str
    schema: str
    migrations: pathlib.Path
    # Builds the server (pools, relays, servicer) on `port`; the server's cleanups release them.
    build: Callable[[Settings, int], Awaitable[GrpcServer]]
