"""Waiting for a gRPC server to report SERVING on the standard health service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime import tls
from services.runtime.config import Settings


def wait_healthy(target: str, deadline_s: float, settings: Settings | None = None) -> bool:
    """Polls until SERVING or the deadline; over TLS (with this process's certificate) when the settings
    configure it."""
    end = time.monotonic() + deadline_s
    with (grpc.secure_channel(target, tls.channel_credentials(settings))
          if settings is not None and tls.enabled(settings) else grpc.insecure_channel(target)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.2)
    return False


async def wait_serving(target: str, deadline_s: float, still_starting: Callable[[], bool] = lambda: True) -> bool:
    """wait_healthy for asyncio code (plaintext); gives up early once still_starting() says the server died."""
    end = time.monotonic() + deadline_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end and still_starting():
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    return False
