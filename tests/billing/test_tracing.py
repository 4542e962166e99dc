"""One RateCall is one trace: billing's decision and its database work, the wallet calls that settle it,
and the wallet's own database work, under the trace of whoever sent the finished call."""

from opentelemetry import trace

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import billing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.billing.app import BILLING
from services.runtime.channels import client_channel
from tests.billing.calls import call, connected
from tests.billing.support import set_rate, unique_zip
from tests.conftest import children, one, trace_of

SERVER, CLIENT = trace.SpanKind.SERVER, trace.SpanKind.CLIENT


async def test_a_rate_call_is_one_trace_through_billing_the_wallet_and_their_storage(
    spans, billing_settings, wallet, contractor
):
    await wallet.TopUp(wpb.TopUpRequest(reason="operator credit", contractor_id=contractor, amount_cents=10_000,
                                        payment_reference=f"{contractor}-t", idempotency_key=f"{contractor}-t"))
    server = await BILLING.build(billing_settings, 0)  # after `spans`, so its wallet channel is traced
    port = await server.start()
    try:
        async with client_channel(f"127.0.0.1:{port}", "engine", billing_settings) as channel:
            billing = billing_pb2_grpc.BillingServiceStub(channel)
            zip_code = unique_zip()
            await set_rate(billing, zip_code, 4500)
            spans.clear()
            with trace.get_tracer("engine").start_as_current_span("call finished") as root:
                reply = await billing.RateCall(
                    pb.RateCallRequest(call=call(connected(contractor, 45), zip_code=zip_code)))
    finally:
        await server.stop(1)
    assert reply.decision.billable and reply.decision.price_cents == 4500
    assert reply.decision.payer_contractor_id == contractor

    mine = trace_of(spans, root)
    rate_server = one(mine, "/callersync.billing.v1.BillingService/RateCall", SERVER)
    assert any(s.attributes.get("db.system") == "postgresql" for s in children(mine, rate_server))
    wallet_clients = [s for s in children(mine, rate_server) if s.kind == CLIENT and "WalletService" in s.name]
    assert wallet_clients, "billing settles with the wallet inside the same trace"
    charge_client = [s for s in wallet_clients if s.name.endswith("/SettleCalls")]
    assert len(charge_client) == 1
    charge_server = one(children(mine, charge_client[0]), "/callersync.wallet.v1.WalletService/SettleCalls", SERVER)
    assert any(s.attributes.get("db.system") == "postgresql" for s in children(mine, charge_server))
