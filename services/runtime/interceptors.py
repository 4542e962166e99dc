"""Around every RPC handler: domain errors to gRPC statuses, one span and one latency sample per call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import propagate

from services.runtime import telemetry
from services.runtime.errors import DomainError, InvalidArgument
from services.runtime.failures import as_domain_error

log = logging.getLogger("callersync.rpc")

ERROR_DOMAIN = "callersync.dev"


def status_details(err: DomainError) -> bytes:
    """A google.rpc.Status with an ErrorInfo, for clients that branch on `reason`."""
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=err.code.value[0], message=err.message, details=[detail])
    return status.SerializeToString()


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason a CallerSync service attached to its status (status_details' inverse), or ''."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


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


def wrap_handler(service_name: str, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler with the runtime's behaviour around it, built once per method (a grpc.aio interceptor
    would rebuild it on every call, ~75 µs of CPU each here): domain and infrastructure errors to statuses
    with ErrorInfo, a latency sample per method and status, and a span that joins the caller's trace when
    tracing is on."""
    if handler.unary_unary is None:
        return handler
    inner = handler.unary_unary
    parse = handler.request_deserializer
    tracer = telemetry.tracer(service_name)
    latency = telemetry.rpc_latency_histogram(service_name)

    async def guarded(request: Any, context: grpc.aio.ServicerContext, span: Any) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            return await inner(_parse(parse, request, method), context)
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
                # The caller gets no stack trace; the log has it, keyed by the trace id.
                trace_id = telemetry.current_trace_id()
                log.exception("unhandled error in %s trace_id=%s", method, trace_id)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error in {method}; nothing was changed if the call moves money. "
                    f"Report trace id {trace_id or 'n/a'} to the CallerSync on-call engineer.",
                )
            assert refusal is not None  # context.abort raised above: grpc's API is untyped, so mypy cannot see it
            if refusal is not err:
                log.warning("%s: %s (%s)", method, refusal.message, type(err).__name__)
            code = refusal.code.name
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", refusal.code.value[0])
            await context.abort(
                refusal.code,
                refusal.message,
                trailing_metadata=(("grpc-status-details-bin", status_details(refusal)),),
            )
        finally:
            latency.record((time.perf_counter() - started) * 1000.0, {"rpc.method": method, "rpc.status": code})

    async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not telemetry.tracing_enabled():
            return await guarded(request, context, None)
        # The caller's trace context (W3C traceparent in the metadata): this call's span joins its trace.
        parent = propagate.extract(dict(context.invocation_metadata() or ()))
        with tracer.start_as_current_span(method, context=parent, kind=telemetry.SERVER_KIND) as span:
            if span.is_recording():
                return await guarded(request, context, span)
            with telemetry.unsampled():
                return await guarded(request, context, None)

    return grpc.unary_unary_rpc_method_handler(
        unary_unary,
        # Parsed inside the handler: a malformed message (invalid UTF-8, truncated bytes) is then the
        # caller's INVALID_ARGUMENT, where grpc's own deserialisation failure would answer INTERNAL.
        request_deserializer=None,
        response_serializer=handler.response_serializer,
    )


class WrappingRegistrar:
    """Stands in for the server when generated `add_XServicer_to_server` code registers a servicer: takes its
    method handlers, wraps each once, and registers the wrapped ones on the real server."""

    def __init__(self, server: grpc.aio.Server, service_name: str) -> None:
        self._server = server
        self._service_name = service_name

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """The generated code passes the same handlers again, generically: registered below instead."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {
            name: wrap_handler(self._service_name, f"/{service}/{name}", handler) for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)
