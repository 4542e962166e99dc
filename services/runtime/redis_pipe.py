"""Redis commands on the hot paths (Lua scripts, outbox batches), sent over one pipelined connection of our own
instead of through redis-py.

redis-py spends ~225 µs of CPU per command on these machines (its pool, retry, observability and packing
layers), more than Redis spends running a script. The same EVALSHA written straight to a socket and parsed
by hiredis costs ~37 µs (docs/performance.md). Concurrent callers share the connection: Redis answers a
connection's commands in order, so replies go to callers first in, first out, and a burst of calls is
pipelined with no pool to wait on. Everything off the hot paths keeps using redis-py.

Failures are redis-py's exceptions, so callers handle both clients alike: ConnectionError (lost or refused;
the calls in flight fail, the next call reconnects; BusyLoadingError while a restarted Redis loads), TimeoutError
(no reply in time: the connection can no longer be matched to its callers, so it is dropped) and ResponseError
(the command failed; that command only). Unlike redis-py's client, nothing is retried here: on these paths the
caller's own deadline is short, and UNAVAILABLE tells it to retry."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as redis
from redis.asyncio.connection import SSLConnection
from redis.connection import BaseParser
from redis.exceptions import AuthenticationError, InvalidResponse, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.runtime import telemetry

Arg = str | bytes | int | float


class Script:
    """A Lua script, known to Redis by the SHA1 of its body."""

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.body = body.encode()
        self.sha = hashlib.sha1(self.body).hexdigest().encode()


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP, encoded as redis-py encodes arguments (numbers as their repr)."""
    parts = [b"*%d\r\n" % len(args)]
    arg: Any  # mypy cannot narrow through `kind`, and type(arg) in each test would cost the speed it buys
    for arg in args:
        kind = type(arg)  # exact types first: an outbox batch packs thousands of arguments
        if kind is str:
            arg = arg.encode()
        elif kind is int or kind is float:  # not bool, whose type is bool
            arg = repr(arg).encode()
        elif kind is not bytes:
            raise TypeError(f"a Redis argument must be str, bytes, int or float, not {kind.__name__}")
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class _Pipe(asyncio.Protocol):
    """One connection: requests written as they come, replies handed out in the same order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.broken: BaseException | None = None
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except InvalidResponse as err:  # not Redis, or a corrupted stream: nothing after this can be matched
                self.fail(err)
                return
            if reply is False:
                return
            if not self.waiting:
                self.fail(InvalidResponse("Redis sent a reply nobody asked for"))
                return
            future = self.waiting.popleft()
            if future.done():  # its caller was cancelled or timed out
                continue
            if isinstance(reply, ResponseError):
                # redis-py's class for the reply (LOADING is BusyLoadingError, a ConnectionError: the server is
                # not ready, the call was fine), so it is handled as redis-py's would be.
                future.set_exception(BaseParser.parse_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost ({exc or 'closed by the server'})"))

    def fail(self, err: BaseException) -> None:
        """Every waiting call gets err, and the connection is not used again."""
        if self.broken is None:
            self.broken = err
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(err)
        if self.transport is not None:
            self.transport.abort()


class RedisPipe:
    def __init__(self, params: dict[str, Any], *, tls: bool = False) -> None:
        self._params = params
        self._tls = tls
        self._reply_timeout_s = float(params.get("socket_timeout") or 5.0)
        self._connect_timeout_s = float(params.get("socket_connect_timeout") or 3.0)
        self._pipe: _Pipe | None = None
        self._connecting = asyncio.Lock()
        self._tracer = telemetry.tracer("redis")
        self._span_attributes: dict[str, str | int] = {"db.system": "redis",
                                                       "db.redis.database_index": int(params.get("db") or 0)}
        if params.get("path"):
            self._span_attributes["net.transport"] = "unix"
        else:
            self._span_attributes.update({"net.peer.name": params.get("host", "localhost"),
                                          "net.peer.port": int(params.get("port", 6379))})

    @classmethod
    def like(cls, client: redis.Redis) -> RedisPipe:
        """A connection to the server, database and credentials client uses, with its timeouts."""
        pool = client.connection_pool
        return cls(dict(pool.connection_kwargs), tls=issubclass(pool.connection_class, SSLConnection))

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """EVALSHA; EVAL when Redis does not have the script (after a restart or SCRIPT FLUSH)."""
        if telemetry.tracing_enabled() and telemetry.recording_children():
            # The attributes opentelemetry-instrumentation-redis gives redis-py's spans, so both look alike.
            with self._tracer.start_as_current_span(f"EVALSHA {script.name}", kind=telemetry.CLIENT_KIND,
                                                    attributes=self._span_attributes):
                return await self._run(script, keys, args)
        return await self._run(script, keys, args)

    async def _run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self.call(pack((b"EVALSHA", script.sha, len(keys), *keys, *args)))
        except NoScriptError:
            pass
        return await self.call(pack((b"EVAL", script.body, len(keys), *keys, *args)))

    async def call(self, request: bytes) -> Any:
        """Sends one packed command and returns its reply."""
        return await self._send(await self._connected(), request)

    async def pipeline(self, requests: Sequence[bytes]) -> list[Any]:
        """Sends packed commands in one write and returns their replies in order; the first failed command
        raises (the others ran: this is a pipeline, not a transaction)."""
        pipe = await self._connected()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        pipe.waiting.extend(futures)
        pipe.transport.write(b"".join(requests))  # type: ignore[union-attr]
        timer = loop.call_later(self._reply_timeout_s, self._expire, pipe, futures[-1])
        try:
            replies = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            timer.cancel()
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def _send(self, pipe: _Pipe, request: bytes) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pipe.waiting.append(future)
        pipe.transport.write(request)  # type: ignore[union-attr]
        timer = loop.call_later(self._reply_timeout_s, self._expire, pipe, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, pipe: _Pipe, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(RedisTimeoutError(f"Redis did not answer within {self._reply_timeout_s}s"))
            pipe.fail(RedisConnectionError("dropped after a reply timed out"))

    async def _connected(self) -> _Pipe:
        pipe = self._pipe
        if pipe is not None and pipe.broken is None:
            return pipe
        async with self._connecting:
            if self._pipe is None or self._pipe.broken is not None:
                self._pipe = await self._open()
            return self._pipe

    async def _open(self) -> _Pipe:
        p = self._params
        loop = asyncio.get_running_loop()
        where = p.get("path") or f"{p.get('host', 'localhost')}:{p.get('port', 6379)}"
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if p.get("path"):
                    _, pipe = await loop.create_unix_connection(_Pipe, p["path"])
                else:
                    _, pipe = await loop.create_connection(_Pipe, p.get("host", "localhost"), p.get("port", 6379),
                                                           ssl=self._ssl_context() if self._tls else None)
        except (OSError, TimeoutError) as err:
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {err or type(err).__name__}") from err
        try:  # before anyone else may use it: a command sent ahead of SELECT would run in database 0
            if p.get("password"):
                credentials = (p["username"], p["password"]) if p.get("username") else (p["password"],)
                await self._send(pipe, pack((b"AUTH", *credentials)))
            if p.get("db"):
                await self._send(pipe, pack((b"SELECT", p["db"])))
        except (ResponseError, AuthenticationError) as err:  # as redis-py reports a refused AUTH or SELECT
            pipe.fail(RedisConnectionError("closed: the connection's set-up failed"))
            raise AuthenticationError(f"Redis at {where} refused the connection's set-up: {err}") from err
        except BaseException:
            pipe.fail(RedisConnectionError("closed: the connection's set-up failed"))
            raise
        return pipe

    def _ssl_context(self) -> ssl.SSLContext:
        p = self._params
        context = ssl.create_default_context(cafile=p.get("ssl_ca_certs"))
        if p.get("ssl_certfile"):
            context.load_cert_chain(p["ssl_certfile"], p.get("ssl_keyfile"))
        reqs = p.get("ssl_cert_reqs", "required")  # "none" from a URL's query, ssl.CERT_NONE from code
        if reqs == ssl.CERT_NONE or str(reqs).lower() == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def aclose(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.fail(RedisConnectionError("closed"))
