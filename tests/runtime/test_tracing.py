"""One call is one trace: the caller's span, the wallet's server span, and the wallet's PostgreSQL and Redis
work, joined by the W3C trace context the client interceptor puts in the metadata."""

import uuid

from opentelemetry import trace

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime import telemetry
from services.runtime.channels import client_channel
from services.runtime.idempotency import retry_metadata


async def test_a_wallet_call_is_one_trace_with_its_database_and_redis_work(spans, wallet_target, settings, contractor):
    spans.clear()
    async with client_channel(wallet_target, "test", settings) as channel:
        wallet = wallet_pb2_grpc.WalletServiceStub(channel)
        with trace.get_tracer("test").start_as_current_span("route a call") as root:
            # A retry: first attempts go to PostgreSQL alone, a retry asks Redis first.
            await wallet.TopUp(pb.TopUpRequest(reason="operator credit", contractor_id=contractor, amount_cents=5000,
                                               payment_reference=f"p-{contractor}", idempotency_key=uuid.uuid4().hex),
                               metadata=retry_metadata(2))
    trace_id = root.get_span_context().trace_id
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in mine}
    client = by_name["/callersync.wallet.v1.WalletService/TopUp"]
    servers = [s for s in mine if s.kind == trace.SpanKind.SERVER]
    assert len(servers) == 1
    server = servers[0]
    assert client.kind == trace.SpanKind.CLIENT and client.parent.span_id == root.context.span_id
    assert server.parent.span_id == client.context.span_id
    below_server = [s for s in mine if s.parent is not None and s.parent.span_id == server.context.span_id]
    assert any(s.attributes.get("db.system") == "postgresql" for s in below_server), [s.name for s in below_server]
    assert any(s.attributes.get("db.system") == "redis" for s in below_server), [s.name for s in below_server]


async def test_without_an_exporter_configured_tracing_installs_nothing(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    monkeypatch.setattr(telemetry, "_configured", False)
    before = trace.get_tracer_provider()
    telemetry.configure("wallet")
    assert trace.get_tracer_provider() is before
