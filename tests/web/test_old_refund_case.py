"""The operator's case page opens any case by its id (GetRefundCase), not only one among the latest cases."""

import uuid

from callersync.billing.v1 import billing_pb2 as bpb
from tests.web.conftest import OPERATOR_EMAIL, check, sign_in
from tests.web.seed import billable_call, claim, contractor_with_wallet

NEWER_CASES = 501  # more than any one page of ListRefundCases holds


async def test_a_case_behind_hundreds_of_newer_ones_opens(stack, desk, db):
    cid, _ = await contractor_with_wallet(stack, 20_000)
    zip_code = await claim(stack, cid, 4500)
    decision = await billable_call(stack, cid, zip_code)
    case = (await stack.billing.RequestRefund(bpb.RequestRefundRequest(
        contractor_id=cid, charge_id=decision.charge_id, reason=bpb.REFUND_REASON_SYSTEM_BUG,
        note="the old case", idempotency_key=uuid.uuid4().hex))).refund_case
    # Newer cases on another contractor's charge, decided already (a charge has only one live case), straight
    # into billing's table: opening hundreds through the API would only make the test slower.
    busy, _ = await contractor_with_wallet(stack, 20_000)
    busy_charge = (await billable_call(stack, busy, await claim(stack, busy, 4500))).charge_id
    await db.execute(
        "INSERT INTO billing.refund_cases (refund_case_id, idempotency_key, request_hash, charge_id, contractor_id,"
        " reason, state, amount_cents, requested_at)"
        " SELECT $1 || n, $1 || n, '\\x00'::bytea, $2, $3, 'REFUND_REASON_SPAM', 'denied', 1,"
        " now() + n * interval '1 ms'"
        " FROM generate_series(1, $4) AS n", f"newer-{uuid.uuid4().hex[:8]}-", busy_charge, busy, NEWER_CASES)
    latest = await stack.billing.ListRefundCases(bpb.ListRefundCasesRequest(page_size=500))
    assert case.refund_case_id not in {c.refund_case_id for c in latest.refund_cases}

    await sign_in(desk, stack, OPERATOR_EMAIL)
    reply = await desk.goto(f"{stack.url}/app/ops/cases/{case.refund_case_id}")
    assert reply.status == 200
    assert "the old case" in await desk.content()
    assert "Waiting for review" in await desk.get_by_test_id("case-state").inner_text()
    await check(desk, "operator-old-case")
    reply = await desk.goto(f"{stack.url}/app/ops/cases/{uuid.uuid4()}")
    assert reply.status == 404
