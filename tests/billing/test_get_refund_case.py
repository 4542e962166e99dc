"""GetRefundCase: one case by its id however many are newer, and with a contractor_id only that contractor's."""

import uuid

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from tests.billing.test_bookings_and_refunds import billed_call, refund
from tests.wallet.support import expect_error


async def test_a_case_is_read_by_its_id_and_only_by_its_contractor(billing, wallet, contractor):
    _, d = await billed_call(billing, wallet, contractor)
    case = (await billing.RequestRefund(refund(contractor, d.charge_id, pb.REFUND_REASON_SPAM))).refund_case
    by_id = (await billing.GetRefundCase(pb.GetRefundCaseRequest(refund_case_id=case.refund_case_id))).refund_case
    assert by_id == case
    own = await billing.GetRefundCase(pb.GetRefundCaseRequest(refund_case_id=case.refund_case_id,
                                                              contractor_id=contractor))
    assert own.refund_case == case
    other = f"ctr-{uuid.uuid4().hex[:10]}"
    err = await expect_error(billing.GetRefundCase(pb.GetRefundCaseRequest(
        refund_case_id=case.refund_case_id, contractor_id=other)), grpc.StatusCode.NOT_FOUND)
    assert case.refund_case_id in err.details() and other in err.details()
    await expect_error(billing.GetRefundCase(pb.GetRefundCaseRequest(refund_case_id=str(uuid.uuid4()))),
                       grpc.StatusCode.NOT_FOUND)
    err = await expect_error(billing.GetRefundCase(pb.GetRefundCaseRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    assert "refund_case_id" in err.details()
