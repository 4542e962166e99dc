"""A deadline for a client to finish sending its request headers.

aiohttp has no header-read timeout: a connection that sends half a request line and then nothing (or one byte
a minute, "slowloris") holds a socket and a parser until keepalive_timeout, 3630 s by default, and enough of
them exhaust the gateway's file descriptors. HeaderDeadline sits between the transport and aiohttp's protocol
and closes a connection whose first request has not finished its headers (the blank line ending them) within
CALLERSYNC_GATEWAY_HEADER_TIMEOUT_S. Later requests on a kept-alive connection are bounded by aiohttp's
keepalive timer (CALLERSYNC_GATEWAY_KEEPALIVE_S), which closes a connection that has not delivered a
complete request that long after its previous response.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("callersync.gateway")
_END_OF_HEADERS = b"\r\n\r\n"


class HeaderDeadline(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol; aborts the connection if no complete header block arrives in
    time."""

    def __init__(self, inner: Any, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._tail = b""
        self._deadline: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._deadline = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            # Only the last 3 bytes of what came before can join this chunk into a blank line.
            seen = self._tail + data
            if _END_OF_HEADERS in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _expire(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            peer = self._transport.get_extra_info("peername")
            log.warning("closed a connection from %s: no complete request headers within %g s", peer,
                        self._timeout_s)
            self._transport.abort()


class GuardedSite(web.TCPSite):
    """web.TCPSite whose connections pass through HeaderDeadline (TCPSite.start, with the protocol wrapped)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, header_timeout_s: float,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        timeout_s = self._header_timeout_s
        self._server = await asyncio.get_running_loop().create_server(
            lambda: HeaderDeadline(server(), timeout_s),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if hasattr(self, "_bound_port"):
            self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
