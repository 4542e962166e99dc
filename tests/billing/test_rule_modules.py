"""Billing's rule modules without a database: the decision row, the rate card, fact freshness, ExplainCall's
story, a call as one contractor sees it, and refund triage. Each test names the rule it proves."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import events_pb2
from services.billing import contractor_calls, decisions, explain, freshness, policy, ratecard, refunds
from services.billing.charge_ids import charge_id
from services.billing.records import Booking, Charge, RatedCall, RefundCase
from services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from tests.billing.calls import START, after, call, connected, missed

R = pb.DecisionRule
LIMITS = freshness.FactLimits(clock_skew_s=60, appointment_max_ahead_days=400, rate_earliest_s=1_577_836_800)
NOW = START + dt.timedelta(hours=1)
DECIDED = Timestamp(seconds=int(NOW.timestamp()))


def decided(c: pb.FinishedCall, rate: tuple[int, dt.datetime] | None = (4500, START - dt.timedelta(days=1))):
    policy.validate_call(c)
    verdict = policy.rate_call(c)
    return verdict, decisions.decision_row(c, verdict, c.SerializeToString(deterministic=True), START, rate, DECIDED)


# decisions.py


def test_a_billable_decision_is_stored_settling_at_the_rate_in_effect_with_its_charge_id_and_event():
    c = call(missed("bob"), connected("acme", 45.0), call_id="call-1")
    verdict, row = decided(c)
    assert (row["state"], row["billable"], row["payer_contractor_id"], row["price_cents"]) == (
        "settling", True, "acme", 4500)
    assert row["rule"] == "DECISION_RULE_BILLABLE_CONNECTED_30S"
    assert row["contractors"] == ["acme", "bob"]
    decision = pb.RatingDecision.FromString(row["decision"])
    assert decision.charge_id == charge_id("call:call-1") and decision.decided_at == DECIDED
    event = events_pb2.BillingEvent.FromString(row["event"]).call_rated
    assert (event.call_id, event.billable, event.price_cents, list(event.rung_contractor_ids)) == (
        "call-1", True, 4500, ["bob", "acme"])


def test_a_free_decision_has_no_price_and_no_charge_id():
    _, row = decided(call(connected("acme", 29.999)))
    decision = pb.RatingDecision.FromString(row["decision"])
    assert (row["billable"], row["price_cents"], decision.charge_id) == (False, 0, "")


def test_a_zip_without_a_rate_when_the_call_started_refuses_the_call_and_stores_nothing():
    with pytest.raises(FailedPrecondition) as refused:
        decided(call(connected("acme", 45.0), zip_code="10001"), rate=None)
    assert refused.value.reason == "ZIP_NOT_PRICED" and "SetZipRate" in refused.value.message


def test_the_same_facts_hash_the_same_and_other_facts_do_not():
    c = call(connected("acme", 45.0), call_id="call-2")
    _, first = decided(c)
    _, again = decided(pb.FinishedCall.FromString(c.SerializeToString()))
    other = pb.FinishedCall()
    other.CopyFrom(c)
    other.legs[0].ended_at.CopyFrom(after(60.0))
    _, changed = decided(other)
    assert first["facts_hash"] == again["facts_hash"] != changed["facts_hash"]


def test_a_call_sent_again_with_other_facts_is_refused_with_the_stored_verdict_quoted():
    _, row = decided(call(connected("acme", 45.0), call_id="call-3"))
    stored = RatedCall.decided({**row}, NOW)
    err = decisions.rated_with_other_facts("call-3", stored)
    assert isinstance(err, AlreadyExists) and err.reason == "CALL_RATED_WITH_OTHER_FACTS"
    assert "billable" in err.message and NOW.isoformat() in err.message


# ratecard.py


@pytest.mark.parametrize(("cents", "ok"), [(0, False), (1, True), (ratecard.MAX_PRICE_CENTS, True),
                                           (ratecard.MAX_PRICE_CENTS + 1, False), (-5, False)])
def test_a_price_is_between_one_cent_and_ten_thousand_dollars(cents, ok):
    if ok:
        ratecard.require_price("rate_cents", cents)
    else:
        with pytest.raises(InvalidArgument) as refused:
            ratecard.require_price("rate_cents", cents)
        assert refused.value.reason == "AMOUNT_OUT_OF_RANGE"


def test_a_rate_change_needs_a_zip_a_moment_and_who_set_it():
    ratecard.validate_zip_rate("94103", 4500, True, "ops")
    for args in (("9410", 4500, True, "ops"), ("94103", 4500, False, "ops"), ("94103", 4500, True, "")):
        with pytest.raises(InvalidArgument):
            ratecard.validate_zip_rate(*args)
    with pytest.raises(InvalidArgument, match="effective_from"):
        ratecard.validate_booking_fee(2500, False, "ops")


def test_a_scheduled_version_may_be_replaced_but_one_in_effect_never_rewritten():
    moment = NOW + dt.timedelta(seconds=1)
    assert ratecard.version_conflict("ZIP 94103", 4500, 5000, moment, NOW) is None
    assert ratecard.version_conflict("ZIP 94103", 4500, 4500, START, NOW) is None  # the same price: a retry
    conflict = ratecard.version_conflict("ZIP 94103", 4500, 5000, NOW, NOW)
    assert conflict is not None and conflict.reason == "RATE_VERSION_IN_EFFECT"


def test_old_calls_keep_their_old_price():
    err = ratecard.repricing_refused("ZIP 94103", START, NOW)
    assert err.reason == "WOULD_REPRICE_BILLED" and NOW.isoformat() in err.message


# freshness.py


def test_a_call_ending_within_the_clock_skew_is_accepted_and_one_past_it_refused():
    now_s = START.timestamp() + 45.0  # the leg ends at START + 48 s
    freshness.check_call(call(connected("acme", 45.0)), LIMITS, now_s=now_s - 60 + 3)  # exactly at the edge
    with pytest.raises(InvalidArgument) as refused:
        freshness.check_call(call(connected("acme", 45.0)), LIMITS, now_s=now_s - 60 + 2.999)
    assert refused.value.metadata["field"] == "legs[0].ended_at"


def test_a_booking_from_the_future_or_an_appointment_too_far_ahead_is_refused():
    scheduled = after(0.0)
    ok = pb.RecordBookingRequest(scheduled_at=scheduled,
                                 appointment_at=Timestamp(seconds=scheduled.seconds + 400 * freshness.DAY_S))
    freshness.check_booking(ok, LIMITS, now_s=START.timestamp())
    too_far = pb.RecordBookingRequest(
        scheduled_at=scheduled, appointment_at=Timestamp(seconds=scheduled.seconds + 400 * freshness.DAY_S + 1))
    with pytest.raises(InvalidArgument) as refused:
        freshness.check_booking(too_far, LIMITS, now_s=START.timestamp())
    assert refused.value.reason == "TIMESTAMP_OUT_OF_RANGE"
    with pytest.raises(InvalidArgument):
        freshness.check_booking(pb.RecordBookingRequest(scheduled_at=after(61.0)), LIMITS, now_s=START.timestamp())


def test_a_price_may_be_back_dated_but_not_before_the_earliest_moment():
    freshness.check_effective_from(Timestamp(seconds=LIMITS.rate_earliest_s), LIMITS)
    with pytest.raises(InvalidArgument) as refused:
        freshness.check_effective_from(Timestamp(seconds=LIMITS.rate_earliest_s - 1), LIMITS)
    assert refused.value.reason == "EFFECTIVE_FROM_TOO_EARLY" and "2020-01-01" in refused.value.message


# explain.py and contractor_calls.py


def stored(c: pb.FinishedCall, state: str = "settled") -> RatedCall:
    _, row = decided(c)
    return dataclasses.replace(RatedCall.decided(row, NOW), state=state)


def charge(contractor: str = "acme", cents: int = 4500, kind: str = "call") -> Charge:
    return Charge("ch-1", contractor, kind, "call-9", "bk-1" if kind == "booking" else "", "94103", cents, 77,
                  "s3://r", True, "s3://t", 0, NOW)


def case(state: str, refund_entry_id: int | None = None) -> RefundCase:
    return RefundCase("rc-1", "k", b"", "ch-1", "acme", "REFUND_REASON_SPAM", "", state, 4500, "", False, "", "",
                      "spam call", "", True, "none", refund_entry_id, NOW, None, None, "", None, None)


def booking(state: str) -> Booking:
    return Booking("bk-1", b"", "call-9", "acme", NOW, None, 2500, START, "ch-2", state, None, NOW)


def test_the_story_reads_out_the_decision_its_charge_and_a_credited_refund():
    rated = stored(call(connected("acme", 45.0), call_id="call-9"))
    text = explain.story("call-9", rated, [charge()], [case("approved", refund_entry_id=90)], [])
    decision = pb.RatingDecision.FromString(rated.decision)
    assert text.startswith(decision.explanation)
    assert "Charge ch-1: $45.00 to acme for the call (wallet entry 77)." in text
    assert "Refund case rc-1 on charge ch-1 (REFUND_REASON_SPAM) was approved, $45.00 credited back. spam call" in text


def test_the_story_says_when_money_is_still_moving_and_when_only_a_booking_arrived():
    rated = stored(call(connected("acme", 45.0)), state="settling")
    assert "still in progress" in explain.story("c", rated, [], [], [])
    text = explain.story("call-9", None, [charge(kind="booking")], [], [booking("settling")])
    assert text.startswith("Call call-9 was not rated")
    assert "for booking bk-1" in text and "Booking bk-1: fee $25.00 is being charged." in text


def test_a_call_concerns_a_contractor_it_rang_charged_or_booked_and_nobody_else():
    facts = call(missed("bob"), connected("acme", 45.0))
    assert explain.concerns("bob", facts, [], []) and explain.concerns("acme", None, [charge()], [])
    assert explain.concerns("acme", None, [], [booking("settled")])
    assert not explain.concerns("carol", facts, [charge()], [booking("settled")])


def test_the_payer_sees_what_they_paid_and_the_others_why_they_did_not():
    rated = stored(call(missed("bob"), connected("acme", 45.0)))
    payer = contractor_calls.for_contractor(rated, "acme")
    assert (payer.payer, payer.billable, payer.charged_cents, payer.connected_ms) == (True, True, 4500, 45_000)
    assert payer.explanation.endswith("you paid $45.00.") and payer.charge_id
    spared = contractor_calls.for_contractor(rated, "bob")
    assert (spared.payer, spared.charged_cents, spared.charge_id, spared.call_billable) == (False, 0, "", True)
    assert spared.rule == R.Value("DECISION_RULE_FREE_CASCADED_PAST")
    assert spared.explanation.endswith("Another contractor answered and paid for the call.")
    stranger = contractor_calls.for_contractor(rated, "carol")
    assert stranger.explanation == "Free for you: this call did not ring you." and stranger.connected_ms == 0


@pytest.mark.parametrize(("days", "first", "count"), [(0, dt.date(2024, 2, 5), 30), (1, dt.date(2024, 3, 5), 1),
                                                      (366, dt.date(2023, 3, 6), 366)])
def test_call_stats_cover_today_and_the_days_before_it(days, first, count):
    assert contractor_calls.stats_period(days, dt.date(2024, 3, 5)) == (first, count)


@pytest.mark.parametrize("days", [-1, 367])
def test_call_stats_refuse_a_period_out_of_range(days):
    with pytest.raises(InvalidArgument):
        contractor_calls.stats_period(days, dt.date(2024, 3, 5))


# refunds.py: triage on arrival


def triage(reason=pb.REFUND_REASON_SPAM, now=NOW, is_call=True, recording=True, transcript=True, duplicate=None):
    return refunds.triage(reason, START, now, 30, is_call, recording, transcript, duplicate)


def test_a_request_on_the_last_moment_of_the_window_is_heard_and_one_after_it_rejected():
    assert triage(now=START + dt.timedelta(days=30)).state == "pending_review"
    late = triage(now=START + dt.timedelta(days=30, microseconds=1))
    assert (late.state, late.auto_resolved) == ("rejected_out_of_window", True)
    assert "2024-04-04" in late.resolution_note


@pytest.mark.parametrize("reason", sorted(refunds.INELIGIBLE))
def test_the_three_ineligible_reasons_are_rejected_in_the_policys_words(reason):
    t = triage(reason=reason, recording=False)  # even an undefendable charge: the reason rules first
    assert (t.state, t.resolution_note) == ("rejected_ineligible", refunds.INELIGIBLE[reason])


@pytest.mark.parametrize(("recording", "transcript", "missing"), [(False, True, "recording"),
                                                                 (True, False, "transcript"),
                                                                 (False, False, "recording and transcript")])
def test_a_call_charge_without_recording_or_transcript_cannot_be_defended(recording, transcript, missing):
    t = triage(recording=recording, transcript=transcript)
    assert (t.state, t.undefendable) == ("approved", True) and f"no {missing}," in t.resolution_note


def test_a_booking_charge_needs_no_recording():
    assert triage(is_call=False, recording=False, transcript=False).state == "pending_review"


def test_a_double_bill_is_decided_by_the_ledger_alone():
    assert triage(reason=pb.REFUND_REASON_DOUBLE_BILL, duplicate=True).state == "approved"
    assert triage(reason=pb.REFUND_REASON_DOUBLE_BILL, duplicate=False).state == "rejected_not_duplicate"


def test_spam_and_system_bug_go_to_an_operator():
    for reason in (pb.REFUND_REASON_SPAM, pb.REFUND_REASON_SYSTEM_BUG):
        t = triage(reason=reason)
        assert (t.state, t.auto_resolved, t.undefendable) == ("pending_review", False, False)


def test_a_refund_never_exceeds_what_is_left_of_the_charge():
    assert refunds.refund_amount(0, 4500, 1000) == 3500
    assert refunds.refund_amount(3500, 4500, 1000) == 3500
    with pytest.raises(InvalidArgument) as refused:
        refunds.refund_amount(3501, 4500, 1000)
    assert refused.value.reason == "REFUND_EXCEEDS_CHARGE"


def test_the_allowance_of_automatic_approvals_once_used_sends_the_request_to_an_operator():
    t = refunds.allowance_exhausted(5, 30)
    assert (t.state, t.auto_resolved) == ("pending_review", False) and "5 refunds" in t.resolution_note
