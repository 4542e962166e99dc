"""Gateway fixtures: the gateway in-process on a free port in front of the real wallet, and a recording gRPC
server standing in for whatever answers billing and routing (their servers are built in parallel)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest

from services.gateway import tokens
from services.gateway.app import Gateway
from services.gateway.bindings import discover_services
from services.gateway.config import GatewayConfig
from services.runtime.config import Settings

SIGNING_KEY = "gateway-test-signing-key-new-32-bytes-long"
OLD_KEY = "gateway-test-signing-key-old-32-bytes-long"  # still verifies: keys rotate without downtime
ALLOWED_ORIGIN = "https://app.callersync.test"


@dataclasses.dataclass
class RecordedCall:
    method: str  # the gRPC path, e.g. /callersync.billing.v1.BillingService/ResolveRefund
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None = None


class Recorder(grpc.GenericRpcHandler):
    """Answers every method of every CallerSync service with an empty response and remembers the request."""

    def __init__(self) -> None:
        from google.protobuf import message_factory

        self.calls: list[RecordedCall] = []
        self._types: dict[str, tuple[Any, Any]] = {}
        for service in discover_services():
            for method in service.methods:
                self._types[f"/{service.full_name}/{method.name}"] = (
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                )

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in self._types:
            return None
        request_class, response_class = self._types[method]

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.calls.append(RecordedCall(method, request, {k: v for k, v in context.invocation_metadata()},
                                           context.time_remaining()))
            return response_class()

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=request_class.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )

    def last(self, method: str) -> RecordedCall:
        found = [c for c in self.calls if c.method == method]
        assert found, f"{method} never reached the recording server; calls: {[c.method for c in self.calls]}"
        return found[-1]


@dataclasses.dataclass
class RecorderServer:
    recorder: Recorder
    target: str


@pytest.fixture(scope="session")
async def recorder_server() -> AsyncIterator[RecorderServer]:
    recorder = Recorder()
    server = grpc.aio.server(handlers=[recorder])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield RecorderServer(recorder, f"127.0.0.1:{port}")
    await server.stop(0)


@pytest.fixture
def recorder(recorder_server: RecorderServer) -> Recorder:
    recorder_server.recorder.calls.clear()
    return recorder_server.recorder


@pytest.fixture(scope="session")
def gateway_config() -> GatewayConfig:
    return GatewayConfig(
        jwt_secret=f"{SIGNING_KEY},{OLD_KEY}",
        cors_origins=f"{ALLOWED_ORIGIN}, https://ops.callersync.test",
    )


async def _started(gateway: Gateway) -> AsyncIterator[str]:
    port = await gateway.start(0)
    yield f"http://127.0.0.1:{port}"
    await gateway.stop(1)


@pytest.fixture(scope="session")
async def gateway_url(
    settings: Settings, gateway_config: GatewayConfig, wallet_target: str, recorder_server: RecorderServer
) -> AsyncIterator[str]:
    """Wallet calls reach the real wallet; billing and routing calls reach the recorder."""
    targets = {"wallet": wallet_target, "billing": recorder_server.target, "routing": recorder_server.target}
    async for url in _started(Gateway(settings, targets=targets, config=gateway_config)):
        yield url


@pytest.fixture(scope="session")
async def recorded_gateway_url(
    settings: Settings, gateway_config: GatewayConfig, recorder_server: RecorderServer
) -> AsyncIterator[str]:
    """Every upstream is the recorder: shows exactly which gRPC call an HTTP request became."""
    targets = dict.fromkeys(("wallet", "billing", "routing"), recorder_server.target)
    async for url in _started(Gateway(settings, targets=targets, config=gateway_config)):
        yield url


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def token(
    role: str, contractor_id: str = "", *, key: str = SIGNING_KEY, ttl_s: int = 600, sub: str = ""
) -> str:
    return tokens.mint_for(
        key.encode(), sub=sub or f"{role}-user", role=role, contractor_id=contractor_id, ttl_s=ttl_s
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="session")
def operator() -> dict[str, str]:
    return bearer(token("operator", sub="ops-alice"))


@pytest.fixture
def as_contractor(contractor: str) -> dict[str, str]:
    """Headers carrying a token for this test's contractor."""
    return bearer(token("contractor", contractor, sub=f"user-of-{contractor}"))


Call = Callable[..., Awaitable[tuple[int, Any, Any]]]


@pytest.fixture
def call(http: aiohttp.ClientSession, gateway_url: str) -> Call:
    """call(method, path, headers=..., json=..., data=...) -> (status, decoded JSON body or None, headers)."""

    async def do(method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        base = kwargs.pop("base", gateway_url)
        async with http.request(method, base + path, **kwargs) as reply:
            raw = await reply.read()
            body = None
            if raw and reply.content_type == "application/json":
                body = json.loads(raw)
            return reply.status, body, reply.headers

    return do
