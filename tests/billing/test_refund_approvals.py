"""An operator approves a refund in part; above the second-approval amount (CALLERSYNC_REFUND_SECOND_APPROVAL_CENTS,
10,000 by default) a second, different operator must confirm before any money moves."""

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from services.billing.refunds import approval_step
from services.runtime import authz
from tests.billing.test_bookings_and_refunds import billed_call, refund
from tests.wallet.support import balance, expect_error


def resolve(case_id: str, reviewer: str, amount: int = 0, resolution=pb.REFUND_RESOLUTION_APPROVE):
    return pb.ResolveRefundRequest(refund_case_id=case_id, resolution=resolution, reviewer=reviewer,
                                   note="checked the recording", amount_cents=amount)


def test_the_approval_steps():
    assert approval_step(10_000, 10_000, "", 0, "alice") == "final"  # at the amount: one approval
    assert approval_step(0, 50_000, "", 0, "alice") == "final"  # turned off
    assert approval_step(10_000, 10_001, "", 0, "alice") == "first"
    assert approval_step(10_000, 10_001, "alice", 10_001, "alice") == "repeat"
    assert approval_step(10_000, 12_000, "alice", 10_001, "alice") == "same_reviewer"
    assert approval_step(10_000, 12_000, "alice", 10_001, "bob") == "other_amount"
    assert approval_step(10_000, 10_001, "alice", 10_001, "bob") == "final"


async def test_an_operator_approves_in_part_and_only_that_is_credited(billing, wallet, contractor):
    _, decision = await billed_call(billing, wallet, contractor, cents=4500)
    asked = refund(contractor, decision.charge_id, pb.REFUND_REASON_SYSTEM_BUG)
    case = (await billing.RequestRefund(asked)).refund_case
    before = (await balance(wallet, contractor)).balance_cents
    await expect_error(billing.ResolveRefund(resolve(case.refund_case_id, "alice", amount=4501)),
                       grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(billing.ResolveRefund(resolve(case.refund_case_id, "alice", 100, pb.REFUND_RESOLUTION_DENY)),
                       grpc.StatusCode.INVALID_ARGUMENT)
    done = (await billing.ResolveRefund(resolve(case.refund_case_id, "alice", amount=2000))).refund_case
    assert (done.state, done.amount_cents, done.requested_cents) == (pb.REFUND_STATE_APPROVED, 2000, 4500)
    assert (await balance(wallet, contractor)).balance_cents == before + 2000


async def test_a_large_refund_needs_a_second_operator_for_the_same_amount(billing, wallet, contractor):
    _, decision = await billed_call(billing, wallet, contractor, cents=15_000)
    asked = refund(contractor, decision.charge_id, pb.REFUND_REASON_SYSTEM_BUG)
    case = (await billing.RequestRefund(asked)).refund_case
    before = (await balance(wallet, contractor)).balance_cents
    first = (await billing.ResolveRefund(resolve(case.refund_case_id, "alice"))).refund_case
    assert (first.state, first.first_approver, first.first_approved_cents) == (
        pb.REFUND_STATE_PENDING_REVIEW, "alice", 15_000)
    again = (await billing.ResolveRefund(resolve(case.refund_case_id, "alice"))).refund_case  # a retry
    assert again.state == pb.REFUND_STATE_PENDING_REVIEW
    err = await expect_error(billing.ResolveRefund(resolve(case.refund_case_id, "alice", amount=12_000)),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert "another operator" in err.details()
    await expect_error(billing.ResolveRefund(resolve(case.refund_case_id, "bob", amount=12_000)),
                       grpc.StatusCode.FAILED_PRECONDITION)
    assert (await balance(wallet, contractor)).balance_cents == before, "no money moves on the first approval"
    done = (await billing.ResolveRefund(resolve(case.refund_case_id, "bob"))).refund_case
    assert (done.state, done.reviewer, done.amount_cents) == (pb.REFUND_STATE_APPROVED, "bob", 15_000)
    assert (await balance(wallet, contractor)).balance_cents == before + 15_000


async def test_one_signed_in_operator_cannot_confirm_their_own_approval_under_another_name(billing, wallet,
                                                                                         contractor):
    """The gateway forwards who signed in (x-callersync-subject; an operator's certificate names them the same
    way): a reviewer is that person, so typing a second name does not make a second operator."""
    _, decision = await billed_call(billing, wallet, contractor, cents=15_000)
    asked = refund(contractor, decision.charge_id, pb.REFUND_REASON_SYSTEM_BUG)
    case = (await billing.RequestRefund(asked)).refund_case
    before = (await balance(wallet, contractor)).balance_cents

    def signed_in(who: str):
        return ((authz.FORWARDED_SUBJECT, who), (authz.FORWARDED_ROLE, "operator"))

    first = await billing.ResolveRefund(resolve(case.refund_case_id, "alice"), metadata=signed_in("alice"))
    assert first.refund_case.first_approver == "alice"
    err = await expect_error(billing.ResolveRefund(resolve(case.refund_case_id, "bob"), metadata=signed_in("alice")),
                             grpc.StatusCode.INVALID_ARGUMENT)
    assert "reviewer must be you ('alice')" in err.details()
    again = await billing.ResolveRefund(resolve(case.refund_case_id, ""), metadata=signed_in("alice"))  # a retry
    assert again.refund_case.first_approver == "alice"
    assert (await balance(wallet, contractor)).balance_cents == before
    done = (await billing.ResolveRefund(resolve(case.refund_case_id, "bob"), metadata=signed_in("bob"))).refund_case
    assert (done.state, done.reviewer) == (pb.REFUND_STATE_APPROVED, "bob")
    assert (await balance(wallet, contractor)).balance_cents == before + 15_000
