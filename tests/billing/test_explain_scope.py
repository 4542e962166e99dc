"""ExplainCall with a contractor_id answers only about calls that concern that contractor (what the gateway
relies on to let contractors explain their own calls)."""

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from tests.billing.calls import call, connected, missed
from tests.billing.support import set_rate, unique_zip
from tests.wallet.support import expect_error, top_up


async def test_a_contractor_explains_calls_that_rang_them_and_no_other(billing, wallet, contractor):
    primary, payer, stranger = f"{contractor}-p", contractor, f"{contractor}-x"
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    await top_up(wallet, payer, 10_000)
    finished = call(missed(primary), connected(payer, 45.0, answered=25.0), zip_code=zip_code)
    await billing.RateCall(pb.RateCallRequest(call=finished))
    for who in (payer, primary):  # the payer, and the primary who missed the ring and pays nothing
        story = await billing.ExplainCall(pb.ExplainCallRequest(call_id=finished.call_id, contractor_id=who))
        assert story.decision.call_id == finished.call_id
    err = await expect_error(
        billing.ExplainCall(pb.ExplainCallRequest(call_id=finished.call_id, contractor_id=stranger)),
        grpc.StatusCode.NOT_FOUND)
    assert "for contractor" in err.details()
    everything = await billing.ExplainCall(pb.ExplainCallRequest(call_id=finished.call_id))
    assert everything.decision.payer_contractor_id == payer
