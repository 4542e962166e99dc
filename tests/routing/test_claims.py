"""Claims and pause thresholds: one primary and ordered backups per ZIP; the threshold (the dearest claimed
ZIP's rate, AI mode: or the booking fee) reaches the wallet on claim changes and on billing's rate events."""

import grpc
import pytest

from callersync.routing.v1 import routing_pb2 as pb
from tests.routing.support import claim, contractors, eventually, get_wallet, price, publish, rate_event
from tests.wallet.support import expect_error

BACKUP = pb.CLAIM_POSITION_BACKUP


async def test_a_zip_has_one_primary_and_backups_in_rank_order(routing, redis_client, db, zip_code):
    await price(redis_client, db, zip_code, 4500)
    a, b, c, d = contractors(4)
    first = await claim(routing, a, zip_code)
    assert first.claim.position == pb.CLAIM_POSITION_PRIMARY and first.claim.rate_cents == 4500
    await claim(routing, b, zip_code, BACKUP)
    await claim(routing, c, zip_code, BACKUP)
    moved = await claim(routing, d, zip_code, BACKUP, rank=1)  # goes first, the others move down
    assert [(x.contractor_id, x.backup_rank) for x in moved.zip_claims] == [(a, 0), (d, 1), (b, 2), (c, 3)]
    again = await claim(routing, d, zip_code, BACKUP)  # the same claim again changes nothing
    assert [x.contractor_id for x in again.zip_claims] == [a, d, b, c]
    listed = await routing.ListClaims(pb.ListClaimsRequest(zip=zip_code))
    assert [x.contractor_id for x in listed.claims] == [a, d, b, c]


async def test_a_taken_primary_slot_or_a_full_backup_list_is_refused(routing, redis_client, db, zip_code):
    await price(redis_client, db, zip_code, 3000)
    owner, *backups, late = contractors(5)
    await claim(routing, owner, zip_code)
    err = await expect_error(claim(routing, late, zip_code), grpc.StatusCode.FAILED_PRECONDITION)
    assert owner in err.details()
    for b in backups:
        await claim(routing, b, zip_code, BACKUP)
    await expect_error(claim(routing, late, zip_code, BACKUP), grpc.StatusCode.FAILED_PRECONDITION)
    assert await db.fetchval("SELECT count(*) FROM routing.claims WHERE contractor_id = $1", late) == 0


async def test_releasing_moves_later_backups_up_and_leaves_the_primary_slot_open(routing, redis_client, db, zip_code):
    await price(redis_client, db, zip_code, 3000)
    a, b, c = contractors(3)
    await claim(routing, a, zip_code)
    await claim(routing, b, zip_code, BACKUP)
    await claim(routing, c, zip_code, BACKUP)
    await routing.ReleaseZip(pb.ReleaseZipRequest(contractor_id=b, zip=zip_code))
    listed = await routing.ListClaims(pb.ListClaimsRequest(zip=zip_code))
    assert [(x.contractor_id, x.backup_rank) for x in listed.claims] == [(a, 0), (c, 1)]
    await routing.ReleaseZip(pb.ReleaseZipRequest(contractor_id=a, zip=zip_code))
    listed = await routing.ListClaims(pb.ListClaimsRequest(zip=zip_code))
    assert [(x.contractor_id, x.position) for x in listed.claims] == [(c, BACKUP)]
    await expect_error(routing.ReleaseZip(pb.ReleaseZipRequest(contractor_id=a, zip=zip_code)),
                       grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize("bad_zip", ["1234", "123456", "12a45", "", " 1234"])
async def test_a_malformed_zip_is_refused_and_nothing_is_written(routing, bad_zip, contractor, db):
    err = await expect_error(claim(routing, contractor, bad_zip), grpc.StatusCode.INVALID_ARGUMENT)
    assert "five digits" in err.details()
    assert await db.fetchval("SELECT count(*) FROM routing.claims WHERE contractor_id = $1", contractor) == 0


async def test_an_unpriced_zip_is_refused_after_asking_billing(routing, contractor, zip_code, db):
    err = await expect_error(claim(routing, contractor, zip_code), grpc.StatusCode.FAILED_PRECONDITION)
    assert "no call rate" in err.details()
    assert await db.fetchval("SELECT count(*) FROM routing.claims WHERE contractor_id = $1", contractor) == 0


async def test_threshold_is_the_dearest_claimed_rate_and_follows_claim_changes(routing, wallet, redis_client, db,
                                                                               make_zip, contractor):
    cheap, dear = make_zip(), make_zip()
    await price(redis_client, db, cheap, 2000)
    await price(redis_client, db, dear, 6000)
    assert (await claim(routing, contractor, cheap)).pause_threshold_cents == 2000
    assert (await get_wallet(wallet, contractor)).pause_threshold_cents == 2000
    assert (await claim(routing, contractor, dear, BACKUP)).pause_threshold_cents == 6000
    assert (await get_wallet(wallet, contractor)).pause_threshold_cents == 6000
    released = await routing.ReleaseZip(pb.ReleaseZipRequest(contractor_id=contractor, zip=dear))
    assert released.pause_threshold_cents == 2000
    assert (await get_wallet(wallet, contractor)).pause_threshold_cents == 2000


async def test_threshold_is_recomputed_when_a_rate_change_event_arrives(routing, wallet, redis_client, db, zip_code,
                                                                        contractor):
    await price(redis_client, db, zip_code, 2500)
    await claim(routing, contractor, zip_code)
    await publish(redis_client, rate_event(zip_code, 7000))

    async def pushed():
        return (await get_wallet(wallet, contractor)).pause_threshold_cents == 7000

    await eventually(pushed, what="threshold 7000 at the wallet")
    listed = await routing.ListClaims(pb.ListClaimsRequest(contractor_id=contractor))
    assert listed.claims[0].rate_cents == 7000


async def test_ai_mode_threshold_is_the_booking_fee_when_higher(routing, wallet, redis_client, db, zip_code,
                                                                contractor):
    await price(redis_client, db, zip_code, 1500)
    await claim(routing, contractor, zip_code)
    reply = await routing.SetMode(pb.SetModeRequest(contractor_id=contractor, mode=pb.CONTRACTOR_MODE_AI_AGENT))
    fee = await db.fetchval("SELECT coalesce((SELECT fee_cents FROM routing.booking_fees WHERE effective_from <= now()"
                            " ORDER BY effective_from DESC LIMIT 1), 2500)")
    assert reply.profile.pause_threshold_cents == max(1500, fee)
    assert (await get_wallet(wallet, contractor)).pause_threshold_cents == max(1500, fee)
    back = await routing.SetMode(pb.SetModeRequest(contractor_id=contractor, mode=pb.CONTRACTOR_MODE_HUMAN))
    assert back.profile.pause_threshold_cents == 1500


async def test_list_claims_of_a_contractor_pages_by_zip(routing, redis_client, db, make_zip, contractor):
    zips = sorted(make_zip() for _ in range(3))
    for z in zips:
        await price(redis_client, db, z, 1000)
        await claim(routing, contractor, z)
    first = await routing.ListClaims(pb.ListClaimsRequest(contractor_id=contractor, page_size=2))
    second = await routing.ListClaims(pb.ListClaimsRequest(contractor_id=contractor, page_size=2,
                                                           page_token=first.next_page_token))
    assert [c.zip for c in first.claims] + [c.zip for c in second.claims] == zips
    assert second.next_page_token == ""
    await expect_error(routing.ListClaims(pb.ListClaimsRequest()), grpc.StatusCode.INVALID_ARGUMENT)
