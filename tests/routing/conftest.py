"""Routing in-process against the real wallet (and the real billing for the rate-card fallback)."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from callersync.routing.v1 import routing_pb2_grpc
from services.routing.app import build
from services.routing.config import RoutingConfig
from services.runtime.config import Settings
from tests.conftest import fresh_database, serving

CONFIG = RoutingConfig(claim_idle_ms=300, burst_max_calls=5, burst_window_s=60)


@pytest.fixture(scope="session")
def routing_settings(settings: Settings, wallet_target: str, billing_target: str) -> Settings:
    return dataclasses.replace(settings, wallet_target=wallet_target, billing_target=billing_target)


@pytest.fixture(scope="session")
async def routing_target(routing_settings: Settings) -> AsyncIterator[str]:
    async with serving(await build(routing_settings, 0, CONFIG)) as target:
        yield target


@pytest.fixture(scope="session")
async def routing(routing_target: str) -> AsyncIterator[routing_pb2_grpc.RoutingServiceStub]:
    async with grpc.aio.insecure_channel(routing_target) as channel:
        yield routing_pb2_grpc.RoutingServiceStub(channel)


_zips = itertools.count(random.randrange(100, 900) * 100)


@pytest.fixture
async def isolated(servers):
    """A routing database of its own, with no routing server consuming into it."""
    pool = await asyncpg.create_pool(await fresh_database(servers), min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def zip_code() -> str:
    """A ZIP no other test of this session uses."""
    return f"{next(_zips) % 100000:05d}"


@pytest.fixture
def make_zip():
    return lambda: f"{next(_zips) % 100000:05d}"
