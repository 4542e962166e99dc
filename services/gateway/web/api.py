"""The pages' only way to data: the gateway's HTTP/JSON API, called in-process with the session's principal.

Each call goes through Gateway.dispatch (route, transcode, authorise, gRPC), exactly as a request with a bearer
token of the same role would, and is remembered (method, path template, gRPC method, status) so tests can
check what scopes each page needed.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
from aiohttp import web

from services.gateway.media.resolver import MediaResolver
from services.gateway.tokens import Principal
from services.runtime.config import Settings


class GatewayPort(Protocol):
    """What the pages need of the gateway that serves them (services/gateway/app.Gateway is it), named here so
    the web app does not import the app that imports it."""

    settings: Settings
    public_url: str
    media: MediaResolver

    def channel(self, upstream: str) -> grpc.aio.Channel: ...

    async def dispatch(self, principal: Principal, http_method: str, raw_path: str, query: Any,
                       read_body: Callable[[], Awaitable[bytes]], *, request_id: str, grpc_timeout: str | None = None,
                       routed: list[str] | None = None) -> web.Response: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


@dataclasses.dataclass(frozen=True)
class ApiCall:
    http_method: str
    rpc_path: str  # e.g. /callersync.wallet.v1.WalletService/GetWallet
    status: int


class Api:
    def __init__(self, gateway: GatewayPort, principal: Principal, log: list[ApiCall] | None = None) -> None:
        self._gateway = gateway
        self.principal = principal
        self.calls: list[ApiCall] = log if log is not None else []

    async def _call(self, http_method: str, path: str, query: dict[str, Any] | None, body: Any) -> Any:
        raw_body = json.dumps(body).encode() if body is not None else b""
        items = [(k, str(v)) for k, v in (query or {}).items() if v not in (None, "")]
        routed = ["unrouted"]

        async def read_body() -> bytes:
            return raw_body

        response = await self._gateway.dispatch(
            self.principal, http_method, path, items, read_body, request_id=uuid.uuid4().hex, routed=routed
        )
        self.calls.append(ApiCall(http_method, routed[0], response.status))
        assert isinstance(response.body, bytes)
        payload = json.loads(response.body) if response.body else {}
        if response.status >= 400:
            raise ApiError(response.status, payload.get("message", "the API refused"), payload)
        return payload

    async def get(self, path: str, **query: Any) -> Any:
        return await self._call("GET", path, query, None)

    async def send(self, http_method: str, path: str, body: dict[str, Any]) -> Any:
        return await self._call(http_method, path, None, body)

    async def delete(self, path: str, **query: Any) -> Any:
        return await self._call("DELETE", path, query, None)


def seg(value: str) -> str:
    """One path segment, percent-encoded."""
    return urllib.parse.quote(value, safe="")
