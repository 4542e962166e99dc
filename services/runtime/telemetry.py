"""OpenTelemetry hooks. Exporters come from the standard OTEL_* variables; with none set nothing is exported
and the API's no-op tracer and meter cost next to nothing (bench/ measures it).

- OTEL_TRACES_EXPORTER=otlp|console: spans for every gRPC call (server and client, W3C trace context in the
  metadata, so one routed call is one trace across services) and for PostgreSQL and Redis work.
- OTEL_METRICS_EXPORTER=otlp|prometheus|console: request latency per method and status, money counters,
  outbox lag and whatever else services register. `prometheus` serves /metrics on
  OTEL_EXPORTER_PROMETHEUS_PORT (default 9464) of this process."""

from __future__ import annotations

import contextlib
import logging
import os

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

SERVER_KIND = trace.SpanKind.SERVER
CLIENT_KIND = trace.SpanKind.CLIENT
log = logging.getLogger("callersync.telemetry")
_configured = False


def configure(service_name: str) -> None:
    """Installs SDK providers only for the exporters asked for."""
    global _configured
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"callersync-{service_name}")})
    traces = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if traces and traces != "none":
        exporter = _span_exporter(traces)
        if exporter is not None:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            instrument_libraries()
    metrics_exporter = os.environ.get("OTEL_METRICS_EXPORTER", "")
    if metrics_exporter and metrics_exporter != "none":
        reader = _metric_reader(metrics_exporter)
        if reader is not None:
            from opentelemetry.sdk.metrics import MeterProvider

            metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def _span_exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none); not exporting traces", name)
    return None


def _metric_reader(name: str):
    if name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        start_http_server(port, addr=os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"))
        return PrometheusMetricReader()
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return PeriodicExportingMetricReader(OTLPMetricExporter())
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    log.warning("OTEL_METRICS_EXPORTER=%s is not supported (otlp, prometheus, console, none)", name)
    return None


def instrument_libraries() -> None:
    """Spans for asyncpg queries and Redis commands. Patches the libraries, so only when tracing is on."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    if not AsyncPGInstrumentor().is_instrumented_by_opentelemetry:
        AsyncPGInstrumentor().instrument()
    if not RedisInstrumentor().is_instrumented_by_opentelemetry:
        RedisInstrumentor().instrument()


def tracing_enabled() -> bool:
    """True once an SDK tracer provider is installed (by configure() or a test); the API's default records
    nothing, so work done only for spans can be skipped. Asked several times per call: reads the provider the
    API holds once set (trace.set_tracer_provider), because trace.get_tracer_provider() looks
    OTEL_PYTHON_TRACER_PROVIDER up in the environment every time, a lookup that shows in the wallet's profile
    per Charge (docs/performance.md)."""
    return isinstance(getattr(trace, "_TRACER_PROVIDER", None), SdkTracerProvider)


def unsampled() -> contextlib.AbstractContextManager[object]:
    """For the work under a span the sampler dropped: the instrumented libraries (asyncpg, Redis) skip their
    spans instead of building ones a parent-based sampler drops too (each cost ~10-20 µs of CPU with tracing on
    at a 10% ratio: attributes, sampler, context). Trace context still propagates to the services it calls."""
    return suppress_instrumentation()


def recording_children() -> bool:
    """False under unsampled(): our own child spans (RedisPipe's) are skipped like the libraries'."""
    return is_instrumentation_enabled()


def tracer(service_name: str) -> trace.Tracer:
    return trace.get_tracer(f"callersync.{service_name}")


def meter(service_name: str) -> metrics.Meter:
    return metrics.get_meter(f"callersync.{service_name}")


class HotCounter:
    """A monotonic counter for per-call paths. add() is a dict update (~0.1 µs); the SDK reads the running
    totals when it collects, through an ObservableCounter, where an SDK Counter's add costs ~5.6 µs here (two
    per Charge and per settled call). Exported the same: a cumulative monotonic sum per attribute set. add()
    runs on the event loop's thread only; the collecting thread reads a copy. One per name and process
    (hot_counter), as the SDK keeps one instrument per name and would observe only the first's callback."""

    def __init__(self, meter_: metrics.Meter, name: str, unit: str, description: str) -> None:
        self._totals: dict[tuple[tuple[str, str], ...], int] = {}
        meter_.create_observable_counter(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, amount: int, attributes: dict[str, str]) -> None:
        key = tuple(attributes.items())
        self._totals[key] = self._totals.get(key, 0) + amount

    def _observe(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [metrics.Observation(total, dict(key)) for key, total in dict(self._totals).items()]


_hot_counters: dict[tuple[str, str], HotCounter] = {}


def hot_counter(service_name: str, name: str, *, unit: str = "", description: str = "") -> HotCounter:
    key = (service_name, name)
    if key not in _hot_counters:
        _hot_counters[key] = HotCounter(meter(service_name), name, unit, description)
    return _hot_counters[key]


def rpc_latency_histogram(service_name: str) -> metrics.Histogram:
    return meter(service_name).create_histogram(
        "rpc.server.duration", unit="ms", description="gRPC server latency per method and status"
    )


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def shutdown() -> None:
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        if hasattr(provider, "shutdown"):
            provider.shutdown()
