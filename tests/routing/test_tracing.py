"""One RouteCall is one trace: the engine's call into routing, routing's Redis work, its Reserve on the
wallet, and the wallet's PostgreSQL work, all under the same trace id with parent links intact."""

from opentelemetry import trace

from callersync.routing.v1 import routing_pb2 as pb
from tests.conftest import children, one, trace_of
from tests.routing.support import caller, new_call, routing_with_a_claim

SERVER, CLIENT = trace.SpanKind.SERVER, trace.SpanKind.CLIENT


async def test_a_route_call_is_one_trace_through_routing_the_wallet_and_their_storage(
    spans, routing_settings, wallet, redis_client, db, contractor, zip_code
):
    async with routing_with_a_claim(spans, routing_settings, wallet, redis_client, db, contractor,
                                    zip_code) as routing:
        with trace.get_tracer("engine").start_as_current_span("homeowner calls") as root:
            answer = await routing.RouteCall(pb.RouteCallRequest(call_id=new_call(), zip=zip_code,
                                                                 caller_number=caller()))
    assert answer.outcome == pb.ROUTE_OUTCOME_OFFERED and answer.candidate.contractor_id == contractor

    mine = trace_of(spans, root)
    route_server = one(mine, "/callersync.routing.v1.RoutingService/RouteCall", SERVER)
    assert route_server.parent.span_id == one(mine, "/callersync.routing.v1.RoutingService/RouteCall",
                                              CLIENT).context.span_id
    reserve_client = one(children(mine, route_server), "/callersync.wallet.v1.WalletService/Reserve", CLIENT)
    reserve_server = one(children(mine, reserve_client), "/callersync.wallet.v1.WalletService/Reserve", SERVER)
    assert any(s.attributes.get("db.system") == "postgresql" for s in children(mine, reserve_server))
    assert any(s.attributes.get("db.system") == "redis" for s in children(mine, route_server))
    assert all(s.status.status_code != trace.StatusCode.ERROR for s in mine)
