"""Around every RPC handler: domain errors to gRPC statuses, one span and one latency sample per call."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, descriptor_pool, duration_pb2
from google.protobuf import descriptor as d
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import propagate

from services.runtime import logs, telemetry, timestamps
from services.runtime.errors import DomainError, InvalidArgument, Overloaded
from services.runtime.failures import as_domain_error

log = logging.getLogger("callersync.rpc")

ERROR_DOMAIN = "callersync.dev"
REQUEST_ID_KEY = "x-request-id"
# A caller's own request id (the gateway's, a client's) is kept when it looks like one; anything else is
# replaced, so a log line never carries a 64 KB or multi-line "id".
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
# Raises (PermissionDenied) unless the call's verified caller may call the method.
CallerCheck = Callable[[grpc.aio.ServicerContext], None]
# How long a shed caller should wait before trying again (google.rpc.RetryInfo).
SHED_RETRY_MS = 250


def status_details(err: DomainError, request_id: str = "", retry_after_ms: int = 0) -> bytes:
    """A google.rpc.Status with an ErrorInfo, for clients that branch on `reason` (and a RetryInfo when the
    caller should come back later)."""
    metadata = dict(err.metadata)
    if request_id:
        metadata["request_id"] = request_id
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if retry_after_ms:
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
            seconds=retry_after_ms // 1000, nanos=(retry_after_ms % 1000) * 1_000_000)))
        details.append(retry)
    status = status_pb2.Status(code=err.code.value[0], message=err.message, details=details)
    return status.SerializeToString()


def error_info(err: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo a CallerSync service attached to its status, or None."""
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


Plan = list[tuple[str, bool, Any]]  # (field name, repeated, the plan of its message type or None for a Timestamp)


def _timestamp_paths(desc: d.Descriptor, seen: frozenset[str] = frozenset()) -> Plan:
    """The fields of `desc` that are, or lead to, a google.protobuf.Timestamp. Empty for a message that holds
    none, so most methods pay nothing per call. Repeated messages are left to the handler, which checks each
    item (timestamps.check) as it validates it: a bad item of a batch is then that item's refusal, not the
    batch's, and a RateCalls batch of 200 calls is not walked twice (3.5 ms here when it was)."""
    plan: Plan = []
    for field in desc.fields:
        sub = field.message_type
        if sub is None or sub.GetOptions().map_entry:
            continue
        if field.is_repeated and sub.full_name != "google.protobuf.Timestamp":
            continue
        if sub.full_name == "google.protobuf.Timestamp":
            plan.append((field.name, field.is_repeated, None))
        elif sub.full_name not in seen:
            inner = _timestamp_paths(sub, seen | {desc.full_name})
            if inner:
                plan.append((field.name, field.is_repeated, inner))
    return plan


_LO, _HI, _NANOS = timestamps.MIN_SECONDS, timestamps.MAX_SECONDS, timestamps.MAX_NANOS


def _stamps_valid(msg: Message, plan: Plan) -> bool:
    """The fast path, run on every request that can hold a Timestamp (a RateCalls batch of 200 calls holds
    ~1,400): no names built, no HasField on Timestamps (an unset one reads as the epoch, which is valid)."""
    for name, repeated, inner in plan:
        value = getattr(msg, name)
        if inner is None:
            for ts in value if repeated else (value,):
                if not (_LO <= ts.seconds <= _HI and 0 <= ts.nanos <= _NANOS):
                    return False
        elif repeated:
            for item in value:
                if not _stamps_valid(item, inner):
                    return False
        elif msg.HasField(name) and not _stamps_valid(value, inner):
            return False
    return True


def _first_bad_stamp(msg: Message, plan: Plan, prefix: str = "") -> None:
    """The slow path, once a request is known to hold a bad Timestamp: refuses it naming the field."""
    for name, repeated, inner in plan:
        value = getattr(msg, name)
        items = list(enumerate(value)) if repeated else [(None, value)]
        for i, item in items:
            path = f"{prefix}{name}" if i is None else f"{prefix}{name}[{i}]"
            if inner is None:
                timestamps.check(path, item)
            elif repeated or msg.HasField(name):
                _first_bad_stamp(item, inner, path + ".")


def check_timestamps(msg: Message, plan: Plan) -> None:
    """INVALID_ARGUMENT, naming the field, for the first Timestamp in `msg` outside protobuf's range."""
    if not _stamps_valid(msg, plan):
        _first_bad_stamp(msg, plan)


def request_id_of(context: grpc.aio.ServicerContext) -> str:
    """The trace id when this call is traced, else the caller's x-request-id when it looks like one, else a
    new one: every reply and every log line of a call carries it."""
    traced = telemetry.current_trace_id()
    if traced:
        return traced
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and REQUEST_ID.match(value):
            return value
    return secrets.token_hex(16)


class Admission:
    """At most `limit` calls of one server's own methods run at once; the next is shed at once with
    RESOURCE_EXHAUSTED, an ErrorInfo (OVERLOADED), a RetryInfo and a request id. grpc.aio's own
    maximum_concurrent_rpcs counts health checks and reflection too (so an overloaded pod would also fail its
    health probe and be restarted, shedding everything), carries no retry hint, and has been seen answering
    CANCELLED after ~1 s; here it stays only as a backstop far above this limit."""

    LOG_EVERY_S = 1.0

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.shed = 0
        self._logged_at = 0.0

    def note_shed(self, method: str, request_id: str) -> None:
        """One warning a second at most, with the count since the last: a flood must not become a log flood."""
        self.shed += 1
        now = time.monotonic()
        if now - self._logged_at >= self.LOG_EVERY_S:
            self._logged_at = now
            log.warning("shedding load: %d calls refused (last %s request_id=%s), %d in flight, limit %d",
                        self.shed, method, request_id, self.in_flight, self.limit)
            self.shed = 0


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason a CallerSync service attached to its status (status_details' inverse), or ''."""
    info = error_info(err)
    return info.reason if info is not None else ""


def _parse(parse: Callable[[bytes], Any] | None, raw: Any, method: str) -> Any:
    if parse is None or not isinstance(raw, bytes):
        return raw
    try:
        return parse(raw)
    except DecodeError:
        raise InvalidArgument(
            f"the request is not a valid {method.rsplit('/', 1)[-1]} message (malformed protobuf or a string "
            "field that is not UTF-8)",
            reason="MALFORMED_REQUEST",
        ) from None


def wrap_handler(service_name: str, method: str, handler: grpc.RpcMethodHandler,
                 admission: Admission | None = None, input_type: d.Descriptor | None = None,
                 authorize: CallerCheck | None = None) -> grpc.RpcMethodHandler:
    """The handler with the runtime's behaviour around it, built once per method (a grpc.aio interceptor
    would rebuild it on every call, ~75 µs of CPU each here): load shedding past the server's concurrency
    limit, a request id in the reply's trailers and the call's log lines, the caller's identity checked
    (`authorize`, services/runtime/authz.py) before the request is parsed, every Timestamp of the request
    checked, domain and infrastructure errors to statuses with ErrorInfo, a latency sample per method and
    status, and a span that joins the caller's trace when tracing is on."""
    if handler.unary_unary is None:
        if authorize is not None:
            raise ValueError(f"{method}: only unary methods can be authorized")
        return handler
    inner = handler.unary_unary
    parse = handler.request_deserializer
    tracer = telemetry.tracer(service_name)
    latency = telemetry.rpc_latency_histogram(service_name)
    stamps = _timestamp_paths(input_type) if input_type is not None else []

    async def refuse(context: grpc.aio.ServicerContext, refusal: DomainError, request_id: str,
                     retry_after_ms: int = 0) -> None:
        await context.abort(
            refusal.code,
            refusal.message,
            trailing_metadata=(
                ("grpc-status-details-bin", status_details(refusal, request_id, retry_after_ms)),
                (REQUEST_ID_KEY, request_id),
            ),
        )

    async def guarded(request: Any, context: grpc.aio.ServicerContext, span: Any) -> Any:
        started = time.perf_counter()
        code = "OK"
        request_id = request_id_of(context)
        token = logs.REQUEST_ID.set(request_id)
        try:
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            if authorize is not None:
                authorize(context)
            message = _parse(parse, request, method)
            if stamps:
                check_timestamps(message, stamps)
            return await inner(message, context)
        except NotImplementedError:
            code = "UNIMPLEMENTED"
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                f"{method} is in the v1 contract but not implemented yet")
        except (grpc.aio.AbortError, asyncio.CancelledError):
            code = "ABORTED_BY_HANDLER"
            raise
        except Exception as err:
            refusal = as_domain_error(err)
            if refusal is None:
                code = "INTERNAL"
                # The caller gets no stack trace; the log has it, keyed by the request id.
                log.exception("unhandled error in %s request_id=%s", method, request_id)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error in {method}; nothing was changed if the call moves money. "
                    f"Report request id {request_id} to the CallerSync on-call engineer.",
                    trailing_metadata=((REQUEST_ID_KEY, request_id),),
                )
            assert refusal is not None  # context.abort raised above: grpc's API is untyped, so mypy cannot see it
            if refusal is not err:
                log.warning("%s: %s (%s)", method, refusal.message, type(err).__name__)
            code = refusal.code.name
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", refusal.code.value[0])
            await refuse(context, refusal, request_id)
        finally:
            logs.REQUEST_ID.reset(token)
            latency.record((time.perf_counter() - started) * 1000.0, {"rpc.method": method, "rpc.status": code})

    async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not telemetry.tracing_enabled():
            return await guarded(request, context, None)
        # The caller's trace context (W3C traceparent in the metadata): this call's span joins its trace.
        parent = propagate.extract(dict(context.invocation_metadata() or ()))
        with tracer.start_as_current_span(method, context=parent, kind=telemetry.SERVER_KIND) as span:
            if span.is_recording():
                return await guarded(request, context, span)
            with telemetry.unsampled():
                return await guarded(request, context, None)

    async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if admission is None:
            return await traced(request, context)
        if admission.in_flight >= admission.limit:
            latency.record(0.0, {"rpc.method": method, "rpc.status": "RESOURCE_EXHAUSTED"})
            request_id = request_id_of(context)
            admission.note_shed(method, request_id)
            await refuse(context, Overloaded(
                f"{service_name} is at its limit of {admission.limit} concurrent calls; retry after "
                f"{SHED_RETRY_MS} ms with backoff", reason="OVERLOADED", limit=str(admission.limit)),
                request_id, SHED_RETRY_MS)
        admission.in_flight += 1
        try:
            return await traced(request, context)
        finally:
            admission.in_flight -= 1

    return grpc.unary_unary_rpc_method_handler(
        unary_unary,
        # Parsed inside the handler: a malformed message (invalid UTF-8, truncated bytes) is then the
        # caller's INVALID_ARGUMENT, where grpc's own deserialisation failure would answer INTERNAL.
        request_deserializer=None,
        response_serializer=handler.response_serializer,
    )


class Authorizer(Protocol):
    """services/runtime/authz.Authorizer: each method's caller check, from the service's access table."""

    def checks(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> dict[str, CallerCheck]: ...


class WrappingRegistrar:
    """Stands in for the server when generated `add_XServicer_to_server` code registers a servicer: takes its
    method handlers, wraps each once (with its caller check when an authorizer is given), and registers the
    wrapped ones on the real server."""

    def __init__(self, server: grpc.aio.Server, service_name: str, admission: Admission | None = None,
                 authorizer: Authorizer | None = None) -> None:
        self._server = server
        self._service_name = service_name
        self._admission = admission
        self._authorizer = authorizer

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """The generated code passes the same handlers again, generically: registered below instead."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        try:
            methods = descriptor_pool.Default().FindServiceByName(service).methods_by_name
        except KeyError:
            methods = {}
        checks = self._authorizer.checks(service, handlers) if self._authorizer is not None else {}
        wrapped = {
            name: wrap_handler(self._service_name, f"/{service}/{name}", handler, self._admission,
                               methods[name].input_type if name in methods else None, checks.get(name))
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)
