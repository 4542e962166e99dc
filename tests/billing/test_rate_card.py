"""The rate card: effective-dated ZIP rates and booking fee, and the events that tell routing."""

import uuid

import grpc

from callersync.billing.v1 import billing_pb2 as pb
from tests.billing.support import at, set_rate, stream_events, unique_zip
from tests.wallet.support import expect_error


async def test_a_zip_rate_is_stored_and_read_back(billing):
    zip_code = unique_zip()
    reply = await set_rate(billing, zip_code, 4500)
    assert (reply.rate.zip, reply.rate.rate_cents, reply.rate.set_by) == (zip_code, 4500, "ops@test")
    assert not reply.rate.HasField("effective_until")
    card = await billing.GetRateCard(pb.GetRateCardRequest(zip=zip_code))
    assert [(r.zip, r.rate_cents) for r in card.rates] == [(zip_code, 4500)]


async def test_a_call_is_priced_at_the_rate_in_effect_when_it_started(billing):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4000, "2021-01-01T00:00:00+00:00")
    await set_rate(billing, zip_code, 5000, "2022-01-01T00:00:00+00:00")
    old = await billing.GetRateCard(pb.GetRateCardRequest(zip=zip_code, as_of=at("2021-12-31T23:59:59+00:00")))
    new = await billing.GetRateCard(pb.GetRateCardRequest(zip=zip_code, as_of=at("2022-01-01T00:00:00+00:00")))
    assert [r.rate_cents for r in old.rates] == [4000]
    assert old.rates[0].effective_until == at("2022-01-01T00:00:00+00:00")
    assert [r.rate_cents for r in new.rates] == [5000]
    history = await billing.GetRateCard(pb.GetRateCardRequest(zip=zip_code, include_history=True))
    assert [r.rate_cents for r in history.rates] == [4000, 5000]


async def test_a_rate_change_is_published_for_routing_with_the_previous_rate(billing, redis_client):
    zip_code, who = unique_zip(), f"alice-{uuid.uuid4().hex[:8]}"
    await set_rate(billing, zip_code, 4000, "2021-01-01T00:00:00+00:00", set_by=who)
    await set_rate(billing, zip_code, 6500, "2023-06-01T00:00:00+00:00", set_by=who)
    changes = await stream_events(
        redis_client, lambda e: e.WhichOneof("event") == "zip_rate_changed" and e.zip_rate_changed.set_by == who,
        count=2,
    )
    assert [(c.zip_rate_changed.zip, c.zip_rate_changed.rate_cents, c.zip_rate_changed.previous_rate_cents)
            for c in changes] == [(zip_code, 4000, 0), (zip_code, 6500, 4000)]
    assert changes[1].zip_rate_changed.effective_from == at("2023-06-01T00:00:00+00:00")
    assert changes[0].event_id < changes[1].event_id


async def test_setting_the_same_rate_again_is_a_no_op_without_a_new_event(billing, redis_client):
    zip_code, who = unique_zip(), f"ops-{uuid.uuid4().hex[:8]}"
    first = await set_rate(billing, zip_code, 4000, set_by=who)
    again = await set_rate(billing, zip_code, 4000, set_by=who)
    assert again.rate == first.rate
    await set_rate(billing, unique_zip(), 100, set_by=who)  # a later event, so the stream has caught up past ours
    changes = await stream_events(
        redis_client, lambda e: e.WhichOneof("event") == "zip_rate_changed" and e.zip_rate_changed.set_by == who,
        count=2,
    )
    assert [c.zip_rate_changed.zip for c in changes] == [zip_code, changes[1].zip_rate_changed.zip]
    assert changes[1].zip_rate_changed.zip != zip_code


async def test_a_rate_in_effect_is_never_rewritten(billing):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4000, "2021-01-01T00:00:00+00:00")
    err = await expect_error(set_rate(billing, zip_code, 4100, "2021-01-01T00:00:00+00:00"),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert "never rewritten" in err.details()


async def test_a_scheduled_rate_can_be_replaced_before_it_takes_effect(billing):
    zip_code = unique_zip()
    await set_rate(billing, zip_code, 4000, "2999-01-01T00:00:00+00:00")
    await set_rate(billing, zip_code, 4200, "2999-01-01T00:00:00+00:00")
    card = await billing.GetRateCard(pb.GetRateCardRequest(zip=zip_code, include_history=True))
    assert [r.rate_cents for r in card.rates] == [4200]


async def test_a_zip_without_a_rate_is_not_found(billing):
    err = await expect_error(billing.GetRateCard(pb.GetRateCardRequest(zip=unique_zip())), grpc.StatusCode.NOT_FOUND)
    assert "SetZipRate" in err.details()


async def test_bad_rate_input_is_refused_and_writes_nothing(billing):
    zip_code = unique_zip()
    good = dict(zip=zip_code, rate_cents=4000, effective_from=at("2021-01-01T00:00:00+00:00"), set_by="ops")
    for bad in (dict(zip="9410"), dict(zip="ABCDE"), dict(rate_cents=0), dict(rate_cents=-5),
                dict(rate_cents=10**9), dict(effective_from=None), dict(set_by=""),
                # Before CallerSync priced anything (2020-01-01): year 1, the epoch, the end of 2019.
                dict(effective_from=at("0001-01-01T00:00:00+00:00")),
                dict(effective_from=at("1970-01-01T00:00:00+00:00")),
                dict(effective_from=at("2019-12-31T23:59:59+00:00"))):
        await expect_error(billing.SetZipRate(pb.SetZipRateRequest(**{**good, **bad})),
                           grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(billing.GetRateCard(pb.GetRateCardRequest(zip=zip_code)), grpc.StatusCode.NOT_FOUND)
    err = await expect_error(billing.SetBookingFee(pb.SetBookingFeeRequest(
        fee_cents=2600, effective_from=at("0001-01-01T00:00:00+00:00"), set_by="ops")),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert "effective_from" in err.details()
    assert (await billing.GetRateCard(pb.GetRateCardRequest())).booking_fee.fee_cents == 2500


async def test_the_whole_card_pages_by_zip(billing):
    zips = sorted(unique_zip() for _ in range(5))
    for z in zips:
        await set_rate(billing, z, 1000 + int(z) % 100)
    seen, token = [], ""
    while True:
        page = await billing.GetRateCard(pb.GetRateCardRequest(page_size=2, page_token=token))
        assert len(page.rates) <= 2
        seen += [r.zip for r in page.rates]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen)
    assert set(zips) <= set(seen)
    await expect_error(billing.GetRateCard(pb.GetRateCardRequest(page_token="garbage")),
                       grpc.StatusCode.INVALID_ARGUMENT)


async def test_the_booking_fee_is_2500_until_set_and_a_change_is_published(billing, redis_client):
    card = await billing.GetRateCard(pb.GetRateCardRequest(as_of=at("2030-01-01T00:00:00+00:00")))
    assert card.booking_fee.fee_cents == 2500
    before = await billing.GetRateCard(pb.GetRateCardRequest(as_of=at("2997-12-31T23:59:59+00:00")))
    who = f"ops-{uuid.uuid4().hex[:8]}"
    reply = await billing.SetBookingFee(
        pb.SetBookingFeeRequest(fee_cents=3000, effective_from=at("2998-01-01T00:00:00+00:00"), set_by=who)
    )
    assert reply.booking_fee.fee_cents == 3000
    later = await billing.GetRateCard(
        pb.GetRateCardRequest(as_of=at("2998-06-01T00:00:00+00:00"), include_history=True)
    )
    assert later.booking_fee.fee_cents == 3000
    assert [f.fee_cents for f in later.booking_fee_history][0] == 2500
    changes = await stream_events(
        redis_client, lambda e: e.WhichOneof("event") == "booking_fee_changed" and e.booking_fee_changed.set_by == who
    )
    assert changes[0].booking_fee_changed.fee_cents == 3000
    assert changes[0].booking_fee_changed.previous_fee_cents == before.booking_fee.fee_cents
    await expect_error(
        billing.SetBookingFee(pb.SetBookingFeeRequest(fee_cents=0, effective_from=at("2998-01-01T00:00:00+00:00"),
                                                      set_by="ops")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
