"""OpenTelemetry hooks. Exporters come from the standard OTEL_* variables; with none set nothing is exported
and the API's no-op tracer and meter cost next to nothing."""

from __future__ import annotations

import logging
import os

from opentelemetry import metrics, trace

SERVER_KIND = trace.SpanKind.SERVER
log = logging.getLogger("callersync.telemetry")
_configured = False


def configure(service_name: str) -> None:
    """Installs an SDK tracer provider only when an exporter is asked for (console is built in)."""
    global _configured
    if _configured:
        return
    _configured = True
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if not exporter_name or exporter_name == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": f"callersync-{service_name}"}))
    if exporter_name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=%s needs opentelemetry-exporter-otlp; not exporting", exporter_name)
            return
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer(service_name: str) -> trace.Tracer:
    return trace.get_tracer(f"callersync.{service_name}")


def rpc_latency_histogram(service_name: str) -> metrics.Histogram:
    meter = metrics.get_meter(f"callersync.{service_name}")
    return meter.create_histogram("rpc.server.duration", unit="ms", description="gRPC server latency")


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def shutdown() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
