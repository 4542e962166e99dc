"""Server interceptor: domain errors to gRPC statuses, one span and one latency sample per call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
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


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service_name: str) -> None:
        self._tracer = telemetry.tracer(service_name)
        self._latency = telemetry.rpc_latency_histogram(service_name)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        parse = handler.request_deserializer
        method = handler_call_details.method
        tracer, latency = self._tracer, self._latency
        # The caller's trace context (W3C traceparent in the metadata): this call's span joins its trace.
        parent = propagate.extract(dict(handler_call_details.invocation_metadata or ()))

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            with tracer.start_as_current_span(method, context=parent, kind=telemetry.SERVER_KIND) as span:
                try:
                    return await inner(_parse(parse, request, method), context)
                except NotImplementedError:
                    code = "UNIMPLEMENTED"
                    await context.abort(
                        grpc.StatusCode.UNIMPLEMENTED, f"{method} is in the v1 contract but not implemented yet"
                    )
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
                    if refusal is not err:
                        log.warning("%s: %s (%s)", method, refusal.message, type(err).__name__)
                    code = refusal.code.name
                    span.set_attribute("rpc.grpc.status_code", refusal.code.value[0])
                    await context.abort(
                        refusal.code,
                        refusal.message,
                        trailing_metadata=(("grpc-status-details-bin", status_details(refusal)),),
                    )
                finally:
                    latency.record(
                        (time.perf_counter() - started) * 1000.0, {"rpc.method": method, "rpc.status": code}
                    )

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            # Parsed inside the handler: a malformed message (invalid UTF-8, truncated bytes) is then the
            # caller's INVALID_ARGUMENT, where grpc's own deserialisation failure would answer INTERNAL.
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )
