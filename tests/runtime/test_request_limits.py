"""What every server does around every call, on a real grpc.aio server: sheds load at once past its
concurrency limit, gives every call a request id (in the reply and the log lines), never echoes a value in
full in a status, never answers a crash with anything but INTERNAL and the request id."""

import asyncio
import json
import logging
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime import telemetry
from services.runtime.errors import InvalidArgument
from services.runtime.interceptors import REQUEST_ID_KEY, error_info
from services.runtime.logs import JsonFormatter
from services.runtime.server import GrpcServer

SERVICE = "test.Probe"
LIMIT = 2
log = logging.getLogger("callersync.test.probe")


class Probe:
    def __init__(self) -> None:
        self.entered = 0
        self.release = asyncio.Event()

    async def hold(self, request: bytes, context) -> bytes:
        self.entered += 1
        await self.release.wait()
        return b""

    async def echo(self, request: bytes, context) -> bytes:
        text = request.decode()
        raise InvalidArgument(f"zip must be 5 digits; got {text!r}. Send a US ZIP code", reason="MALFORMED_ZIP",
                              zip=text, **{f"k{i}": text for i in range(40)})

    async def crash(self, request: bytes, context) -> bytes:
        raise RuntimeError("a bug")

    async def say(self, request: bytes, context) -> bytes:
        log.warning("serving %s", request.decode())
        return b"ok"

    def register(self, registrar) -> None:
        handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(self, name))
                    for name in ("hold", "echo", "crash", "say")}
        registrar.add_registered_method_handlers(SERVICE, handlers)


@pytest.fixture
async def probe():
    probe = Probe()
    server = GrpcServer("probe", SERVICE, probe.register, host="127.0.0.1", port=0, max_concurrent_rpcs=LIMIT)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        probe.channel = channel
        yield probe
        probe.release.set()
    await server.stop(1)


def method(probe, name):
    return probe.channel.unary_unary(f"/{SERVICE}/{name}")


def trailer(err, key):
    return dict(err.trailing_metadata() or ()).get(key)


async def call_trailer(call, key):
    return dict(await call.trailing_metadata() or ()).get(key)


async def test_past_the_limit_a_call_is_shed_at_once_with_a_retry_hint(probe):
    held = [asyncio.ensure_future(method(probe, "hold")(b"", timeout=10)) for _ in range(LIMIT)]
    while probe.entered < LIMIT:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await method(probe, "hold")(b"", timeout=10)
    took = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
    assert took < 0.5, f"shed after {took:.2f} s"
    assert error_info(info.value).reason == "OVERLOADED"
    status = status_pb2.Status.FromString(trailer(info.value, "grpc-status-details-bin"))
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details) and retry.retry_delay.ToMilliseconds() > 0
    # Health checks still answer while the service sheds its own calls.
    reply = await health_pb2_grpc.HealthStub(probe.channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    probe.release.set()
    await asyncio.gather(*held)
    assert await method(probe, "say")(b"again", timeout=5) == b"ok"


async def test_an_echoed_value_is_cut_so_the_status_fits_its_trailers(probe):
    huge = "9" * (64 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await method(probe, "echo")(huge.encode(), timeout=5)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err  # not RESOURCE_EXHAUSTED from oversized trailers
    assert len(err.details()) < 400 and "…(6553" in err.details() and "Send a US ZIP code" in err.details()
    meta = error_info(err).metadata
    assert meta["zip"].startswith("9" * 64) and len(meta["zip"]) < 128
    assert len(meta) <= 17  # 16 of ours and the request id
    assert sum(len(k) + len(v) for k, v in err.trailing_metadata()) < 8 * 1024


async def test_every_reply_carries_a_request_id_that_the_log_lines_carry_too(probe, monkeypatch):
    # Tracing off, as in a deployment without an exporter (another test may have installed a tracer provider):
    # with it on, the request id is the trace id.
    monkeypatch.setattr(telemetry, "tracing_enabled", lambda: False)
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(JsonFormatter("probe").format(record)))

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        call = method(probe, "say")(b"first", timeout=5)
        await call
        first = await call_trailer(call, REQUEST_ID_KEY)
        call = method(probe, "say")(b"second", timeout=5, metadata=((REQUEST_ID_KEY, "gw-0123456789abcdef"),))
        await call
        assert await call_trailer(call, REQUEST_ID_KEY) == "gw-0123456789abcdef"  # a caller's well-formed id is kept
        call = method(probe, "say")(b"third", timeout=5, metadata=((REQUEST_ID_KEY, "x" * 300),))
        await call
        third = await call_trailer(call, REQUEST_ID_KEY)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await method(probe, "crash")(b"", timeout=5)
    finally:
        logging.getLogger().removeHandler(keep)
    assert first and len(first) == 32 and third and len(third) == 32 and first != third
    said = {line["message"]: line.get("request_id") for line in lines}
    assert said["serving first"] == first and said["serving third"] == third
    assert said["serving second"] == "gw-0123456789abcdef"
    err = info.value
    assert err.code() == grpc.StatusCode.INTERNAL
    crashed = trailer(err, REQUEST_ID_KEY)
    assert crashed and f"Report request id {crashed}" in err.details() and "n/a" not in err.details()
    assert any(line.get("request_id") == crashed and "RuntimeError: a bug" in line.get("exception", "")
               for line in lines)


async def test_a_refusal_names_its_request_id_in_the_error_info(probe):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await method(probe, "echo")(b"941", timeout=5)
    assert error_info(info.value).metadata["request_id"] == trailer(info.value, REQUEST_ID_KEY)


async def test_with_tracing_on_the_request_id_is_the_trace_id(spans, probe):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await method(probe, "crash")(b"", timeout=5, metadata=((REQUEST_ID_KEY, "gw-0123456789abcdef"),))
    request_id = trailer(info.value, REQUEST_ID_KEY)
    assert len(request_id) == 32 and int(request_id, 16) and f"Report request id {request_id}" in info.value.details()
