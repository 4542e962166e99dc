"""A stand-in for an OpenTelemetry collector: an OTLP/gRPC server that takes every trace and metrics export, counts
what it got (spans per service, export requests, metric data points) and drops it.

    python bench/otlp_sink.py --port 4317 --out counts.json   # rewrites the counts every half second

The production profile of `callersync bench` points the services' OTLP exporters at it, so the figures include
what deployed tracing costs the services (spans, the batch processor, protobuf encoding and the export RPCs) but
not a collector's own work, which runs elsewhere in a deployment."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import pathlib
import signal

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

counts: dict = {"spans": 0, "trace_exports": 0, "metric_exports": 0, "metric_points": 0,
                "spans_by_service": collections.Counter()}


def _service(resource) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return kv.value.string_value
    return "?"


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    async def Export(self, request, context):  # noqa: N802 (the OTLP method name)
        counts["trace_exports"] += 1
        for rs in request.resource_spans:
            n = sum(len(ss.spans) for ss in rs.scope_spans)
            counts["spans"] += n
            counts["spans_by_service"][_service(rs.resource)] += n
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    async def Export(self, request, context):  # noqa: N802
        counts["metric_exports"] += 1
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    counts["metric_points"] += len(getattr(m, kind).data_points) if kind else 0
        return metrics_service_pb2.ExportMetricsServiceResponse()


async def serve(port: int, out: pathlib.Path) -> None:
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        out.write_text(json.dumps(counts))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await server.stop(2)  # exports in flight (a service's last flush at shutdown) still land
    out.write_text(json.dumps(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="JSON counts, rewritten every 0.5 s")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))


if __name__ == "__main__":
    main()
