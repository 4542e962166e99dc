"""Billing in-process on a free port, talking to the session's in-process wallet."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from callersync.billing.v1 import billing_pb2_grpc
from services.billing.app import BILLING
from services.runtime.config import Settings


@pytest.fixture(scope="session")
def billing_settings(settings: Settings, wallet_target: str) -> Settings:
    return dataclasses.replace(settings, wallet_target=wallet_target)


@pytest.fixture(scope="session")
async def billing_target(billing_settings: Settings) -> AsyncIterator[str]:
    server = await BILLING.build(billing_settings, 0)
    port = await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(1)


@pytest.fixture(scope="session")
async def billing(billing_target: str) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    async with grpc.aio.insecure_channel(billing_target) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)
