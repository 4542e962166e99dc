"""GetRefundCase over HTTP: operators read any case; a contractor's request is scoped to their own contractor_id,
so billing answers only with a case of theirs."""

import uuid

GET_CASE = "/callersync.billing.v1.BillingService/GetRefundCase"


async def test_a_contractors_case_lookup_carries_their_own_id(call, contractor, as_contractor, recorder):
    status, body, _ = await call("GET", "/v1/refundCases/case-1", headers=as_contractor)
    assert status == 200, body
    request = recorder.last(GET_CASE).request
    assert (request.refund_case_id, request.contractor_id) == ("case-1", contractor)
    status, body, _ = await call("GET", f"/v1/contractors/{contractor}/refundCases/case-2", headers=as_contractor)
    assert status == 200, body
    assert recorder.last(GET_CASE).request.contractor_id == contractor


async def test_a_contractor_cannot_ask_for_another_contractors_case(call, contractor, as_contractor, recorder):
    other = f"ctr-{uuid.uuid4().hex[:12]}"
    status, body, _ = await call("GET", f"/v1/contractors/{other}/refundCases/case-1", headers=as_contractor)
    assert (status, body["code"]) == (403, 7), body
    status, _, _ = await call("GET", "/v1/refundCases/case-1", params={"contractorId": other}, headers=as_contractor)
    assert status == 403
    assert recorder.calls == []


async def test_an_operator_reads_any_case(call, operator, recorder):
    status, body, _ = await call("GET", "/v1/refundCases/case-9", headers=operator)
    assert status == 200, body
    request = recorder.last(GET_CASE).request
    assert (request.refund_case_id, request.contractor_id) == ("case-9", "")
