"""Facts that have not happened yet, or that no Timestamp can hold, are refused before anything is billed."""

import datetime as dt

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from tests.billing.calls import call, connected
from tests.billing.support import set_rate, unique_zip
from tests.wallet.support import expect_error, ledger, top_up


async def priced(billing, wallet, contractor):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4500)
    await top_up(wallet, contractor, 10_000)
    return zip_code


# 8,000 years ahead is past year 9999, outside any Timestamp: test_a_timestamp_out_of_range_... covers it.
@pytest.mark.parametrize("ahead", [dt.timedelta(seconds=70), dt.timedelta(days=365 * 7000)], ids=["70s", "7000y"])
async def test_a_leg_ending_in_the_future_is_refused_not_billed(billing, wallet, db, contractor, ahead):
    zip_code = await priced(billing, wallet, contractor)
    # The call started 60 s ago and "ends" `ahead` from now.
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    c = call(connected(contractor, (ahead + dt.timedelta(seconds=55)).total_seconds(), start=start),
             zip_code=zip_code, start=start)
    err = await expect_error(billing.RateCall(pb.RateCallRequest(call=c)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "legs[0].ended_at" in err.details() and "future" in err.details()
    batch = await billing.RateCalls(pb.RateCallsRequest(calls=[c]))
    assert batch.results[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert batch.results[0].reason == "TIMESTAMP_IN_FUTURE"
    assert await ledger(db, contractor) == (10_000, 1, 10_000)
    assert await db.fetchval("SELECT count(*) FROM billing.rated_calls WHERE call_id = $1", c.call_id) == 0


async def test_a_call_ending_within_the_clock_skew_is_billed(billing, wallet, db, contractor):
    zip_code = await priced(billing, wallet, contractor)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=20)
    c = call(connected(contractor, 45.0, start=start), zip_code=zip_code, start=start)  # ends ~30 s from now
    decision = (await billing.RateCall(pb.RateCallRequest(call=c))).decision
    assert decision.billable and decision.price_cents == 4500


OUT_OF_RANGE = {
    "seconds 2^62": Timestamp(seconds=2**62),
    "before year 1": Timestamp(seconds=-62_135_596_801),
    "after year 9999": Timestamp(seconds=253_402_300_800),
    "nanos 2e9": Timestamp(seconds=1_700_000_000, nanos=2_000_000_000),
    "negative nanos": Timestamp(seconds=1_700_000_000, nanos=-1),
}


@pytest.mark.parametrize("name", OUT_OF_RANGE)
async def test_a_timestamp_out_of_range_is_invalid_argument_naming_the_field(billing, wallet, db, contractor, name):
    zip_code = await priced(billing, wallet, contractor)
    bad = OUT_OF_RANGE[name]
    err = await expect_error(billing.GetRateCard(pb.GetRateCardRequest(as_of=bad)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "as_of" in err.details() and "year 1 to 9999" in err.details()
    err = await expect_error(billing.SetZipRate(pb.SetZipRateRequest(zip=zip_code, rate_cents=100, effective_from=bad,
                                                                     set_by="ops")), grpc.StatusCode.INVALID_ARGUMENT)
    assert "effective_from" in err.details()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    c = call(connected(contractor, 60.0, start=start), zip_code=zip_code, start=start)
    c.legs[0].ended_at.CopyFrom(bad)
    err = await expect_error(billing.RateCall(pb.RateCallRequest(call=c)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "legs[0].ended_at" in err.details() and "year 1 to 9999" in err.details()
    # In a batch, the bad call is refused on its own; the good one beside it is billed.
    good = call(connected(contractor, 60.0, start=start), zip_code=zip_code, start=start)
    batch = await billing.RateCalls(pb.RateCallsRequest(calls=[c, good]))
    assert [r.reason for r in batch.results] == ["TIMESTAMP_OUT_OF_RANGE", ""]
    assert batch.results[1].decision.billable
    err = await expect_error(billing.ReplayEvents(pb.ReplayEventsRequest(since=bad, requested_by="ops")),
                             grpc.StatusCode.INVALID_ARGUMENT)
    assert await ledger(db, contractor) == (10_000 - 4500, 2, 10_000 - 4500)
