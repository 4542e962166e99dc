"""Refusals carry a typed reason callers switch on, named like the ErrorInfo reason string that stays as it was."""

from callersync.billing.v1 import billing_pb2 as pb
from services.billing import mappers
from tests.billing.calls import call, connected
from tests.billing.support import set_rate, unique_zip
from tests.wallet.support import top_up


def test_every_typed_refusal_is_named_after_its_reason_string():
    for name, value in pb.BillingRefusal.items():
        if value:
            assert mappers.refusal(name.removeprefix("BILLING_REFUSAL_")) == value
    assert mappers.refusal("") == pb.BILLING_REFUSAL_UNSPECIFIED
    assert mappers.refusal("SOMETHING_THE_WALLET_SAID") == pb.BILLING_REFUSAL_UNSPECIFIED


async def test_a_batch_result_gives_the_refusal_typed_and_as_the_old_string(billing, wallet, contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 1500)
    await top_up(wallet, contractor, 10_000)
    good = call(connected(contractor, 45.0), zip_code=zip_code)
    unpriced = call(connected(contractor, 45.0), zip_code=unique_zip())
    orphan = call(connected(contractor + "-nowallet", 45.0), zip_code=zip_code)
    reply = await billing.RateCalls(pb.RateCallsRequest(calls=[good, unpriced, orphan]))
    assert [(r.reason, r.refusal) for r in reply.results] == [
        ("", pb.BILLING_REFUSAL_UNSPECIFIED),
        ("ZIP_NOT_PRICED", pb.BILLING_REFUSAL_ZIP_NOT_PRICED),
        ("NO_WALLET", pb.BILLING_REFUSAL_NO_WALLET),
    ]
