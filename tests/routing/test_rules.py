"""The plain rules: claim slots, pause thresholds, weekly hours, caps, skip reasons, the cascade session."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.routing import cascade, claims, schedule
from services.routing.cascade import Counters, Entry, Session
from services.routing.claims import BACKUP, PRIMARY, Slot
from services.routing.schedule import Profile, Window
from services.runtime import pause_line
from services.runtime.errors import FailedPrecondition, InvalidArgument


def test_a_backup_claimed_at_a_rank_pushes_later_backups_down():
    slots = [Slot("p", PRIMARY, 0), Slot("a", BACKUP, 1), Slot("b", BACKUP, 2)]
    after = claims.apply_claim(slots, "c", BACKUP, 1, 3)
    assert after == [Slot("p", PRIMARY, 0), Slot("c", BACKUP, 1), Slot("a", BACKUP, 2), Slot("b", BACKUP, 3)]


def test_a_backup_moving_to_the_open_primary_slot_closes_the_gap_it_leaves():
    slots = [Slot("a", BACKUP, 1), Slot("b", BACKUP, 2)]
    assert claims.apply_claim(slots, "a", PRIMARY, 0, 3) == [Slot("a", PRIMARY, 0), Slot("b", BACKUP, 1)]


def test_the_primary_claiming_again_as_primary_changes_nothing():
    slots = [Slot("a", PRIMARY, 0), Slot("b", BACKUP, 1)]
    assert claims.apply_claim(slots, "a", PRIMARY, 0, 3) == slots


def test_a_taken_primary_and_a_full_backup_list_are_refused():
    with pytest.raises(FailedPrecondition):
        claims.apply_claim([Slot("a", PRIMARY, 0)], "b", PRIMARY, 0, 3)
    with pytest.raises(FailedPrecondition):
        claims.apply_claim([Slot("a", BACKUP, 1)], "b", BACKUP, 0, 1)


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 4)), max_size=30))
def test_any_sequence_of_claims_and_releases_keeps_one_primary_and_dense_backup_ranks(ops):
    slots: list[Slot] = []
    for who, release, rank in ops:
        try:
            if release:
                slots = claims.release_claim(slots, who)
            else:
                slots = claims.apply_claim(slots, who, PRIMARY if rank == 4 else BACKUP, 0 if rank == 4 else rank, 3)
        except FailedPrecondition:
            pass
        assert sum(s.position == PRIMARY for s in slots) <= 1
        assert sorted(s.backup_rank for s in slots if s.position == BACKUP) == list(
            range(1, 1 + sum(s.position == BACKUP for s in slots)))
        assert len({s.contractor_id for s in slots}) == len(slots)


def test_the_threshold_is_the_dearest_claimed_rate_and_in_ai_mode_the_fee_if_higher():
    assert pause_line.pause_threshold_cents([2000, 6500, 3000], False, 2500) == 6500
    assert pause_line.pause_threshold_cents([1500], True, 2500) == 2500
    assert pause_line.pause_threshold_cents([9000], True, 2500) == 9000
    assert pause_line.pause_threshold_cents([], True, 2500) == 0  # nothing claimed: no call to pause


@pytest.mark.parametrize("number,ok", [("+14155550123", True), ("+442071838750", True), ("14155550123", False),
                                       ("+0123456789", False), ("+1415555012345678", False), ("+1 415 555", False)])
def test_caller_numbers_must_be_e164(number, ok):
    if ok:
        assert claims.require_e164(number) == number
    else:
        with pytest.raises(InvalidArgument):
            claims.require_e164(number)


def test_weekly_hours_are_checked_in_the_contractors_time_zone():
    # Monday 9:00-17:00 in Chicago; 2026-11-23 is a Monday, Chicago is UTC-6 in November.
    profile = Profile("c", time_zone="America/Chicago", windows=(Window(1, 9 * 60, 17 * 60),))
    assert schedule.within_hours(profile, dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC))  # 9:00 local
    assert not schedule.within_hours(profile, dt.datetime(2026, 11, 23, 14, 59, tzinfo=dt.UTC))  # 8:59 local
    assert not schedule.within_hours(profile, dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC))  # 17:00 local
    assert schedule.within_hours(Profile("any"), dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC))


def test_overlapping_or_inverted_windows_and_unknown_zones_are_refused():
    with pytest.raises(InvalidArgument):
        schedule.validate_windows([Window(1, 60, 120), Window(1, 100, 200)])
    with pytest.raises(InvalidArgument):
        schedule.validate_windows([Window(2, 300, 300)])
    with pytest.raises(InvalidArgument):
        schedule.require_time_zone("Mars/Olympus")
    assert schedule.validate_windows([Window(1, 0, 60), Window(1, 60, 120)])  # touching is fine


def test_a_schedule_holds_at_most_ten_windows_a_day():
    minutes = [Window(day, m, m + 1) for day in range(1, 8) for m in range(0, 1440, 2)]  # 5,040, none overlapping
    with pytest.raises(InvalidArgument, match="at most 70"):
        schedule.validate_windows(minutes)
    assert len(schedule.validate_windows([Window(day, m, m + 60) for day in range(1, 8)
                                          for m in range(0, 600, 60)])) == 70


def test_skip_reasons_come_in_order_hours_then_caps_then_busy():
    now = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    closed = Profile("c", windows=(Window(2, 0, 60),), daily_max_connected_calls=1)
    assert cascade.local_skip(closed, now, Counters(1, 5, 5))[0] == cascade.SkipReason.OUTSIDE_HOURS
    capped = Profile("c", daily_max_connected_calls=3, monthly_max_connected_calls=10)
    assert cascade.local_skip(capped, now, Counters(0, 3, 3))[0] == cascade.SkipReason.DAILY_CAP
    assert cascade.local_skip(capped, now, Counters(0, 2, 10))[0] == cascade.SkipReason.MONTHLY_CAP
    assert cascade.local_skip(Profile("c"), now, Counters(1, 0, 0))[0] == cascade.SkipReason.BUSY
    assert (cascade.local_skip(Profile("c", max_concurrent_calls=2), now, Counters(2, 0, 0))[0]
            == cascade.SkipReason.CONCURRENCY_CAP)
    assert cascade.local_skip(Profile("c", mode="ai_agent"), now, Counters(50, 0, 0)) is None


def test_the_session_walks_on_after_the_last_offered_and_survives_a_round_trip():
    order = [Entry("p", PRIMARY, 0, "human"), Entry("a", BACKUP, 1, "human"), Entry("b", BACKUP, 2, "ai_agent")]
    session = Session("call", "60614", "+14155550123", 4000, order, offered=["p"])
    assert [e.contractor_id for e in session.remaining()] == ["a", "b"]
    session.offered.append("b")
    assert Session.loads(session.dumps()).remaining() == []
    assert Session.loads(session.dumps()) == session
