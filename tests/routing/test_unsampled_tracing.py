"""A RouteCall under a trace the sampler dropped (most calls, at the ratio a deployment samples): routing and the
wallet still carry the trace on (the wallet's server span joins the caller's trace id) but build no spans below
their server spans, neither CLIENT spans around calls nor the spans of PostgreSQL and Redis work, which the
parent-based sampler would drop anyway at a cost of CPU on every call."""

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from callersync.routing.v1 import routing_pb2 as pb
from tests.routing.support import caller, new_call, routing_with_a_claim

ROUTE = "/callersync.routing.v1.RoutingService/RouteCall"
RESERVE = "/callersync.wallet.v1.WalletService/Reserve"


async def test_an_unsampled_route_call_asks_the_sampler_only_for_its_server_spans(
    spans, routing_settings, wallet, redis_client, db, contractor, zip_code, monkeypatch
):
    trace_id = 0x5EED_0000_0000_0000_0000_0000_0000_0018
    asked: list[tuple[str, str]] = []
    sampler = trace.get_tracer_provider().sampler  # type: ignore[attr-defined]
    should_sample = sampler.should_sample

    def counting(parent_context, span_trace_id, name, kind=None, *args, **kwargs):
        if span_trace_id == trace_id:
            asked.append((name, kind.name if kind else ""))
        return should_sample(parent_context, span_trace_id, name, kind, *args, **kwargs)

    async with routing_with_a_claim(spans, routing_settings, wallet, redis_client, db, contractor,
                                    zip_code) as routing:
        monkeypatch.setattr(sampler, "should_sample", counting)
        dropped = NonRecordingSpan(SpanContext(trace_id, 0x18, is_remote=False, trace_flags=TraceFlags(0)))
        with trace.use_span(dropped):
            answer = await routing.RouteCall(pb.RouteCallRequest(call_id=new_call(), zip=zip_code,
                                                                 caller_number=caller()))
        monkeypatch.undo()
    assert answer.outcome == pb.ROUTE_OUTCOME_OFFERED and answer.candidate.contractor_id == contractor
    # Routing's server span, then the wallet's (the trace id crossed the hop): nothing else was even built.
    assert asked == [(ROUTE, "SERVER"), (RESERVE, "SERVER")], asked
    assert not [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
