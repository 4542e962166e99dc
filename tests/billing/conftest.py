"""A client of the session's in-process billing (billing_target, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from callersync.billing.v1 import billing_pb2_grpc


@pytest.fixture(scope="session")
async def billing(billing_target: str) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    async with grpc.aio.insecure_channel(billing_target) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)
