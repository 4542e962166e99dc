"""The billing policy, one test per sentence of product.md ("Which calls are billable"), without I/O."""

import pytest

from callersync.billing.v1 import billing_pb2 as pb
from services.billing import policy
from services.runtime.errors import InvalidArgument
from tests.billing.calls import call, connected, leg, missed

R = pb.DecisionRule


def rated(*legs, **kw) -> policy.Verdict:
    c = call(*legs, **kw)
    policy.validate_call(c)
    return policy.rate_call(c)


def test_30_000_seconds_connected_is_billable():
    v = rated(connected("acme", 30.000))
    assert (v.billable, v.rule, v.payer_contractor_id, v.connected_ms) == (
        True, R.Value("DECISION_RULE_BILLABLE_CONNECTED_30S"), "acme", 30_000)


def test_29_999_seconds_is_free():
    v = rated(connected("acme", 29.999))
    assert (v.billable, v.rule, v.payer_contractor_id, v.connected_ms) == (
        False, R.Value("DECISION_RULE_FREE_UNDER_30S"), "", 29_999)


def test_connected_time_runs_from_answer_to_hangup_not_from_the_ring():
    v = rated(leg("acme", rang=0.0, answered=20.0, ended=49.999))
    assert not v.billable and v.connected_ms == 29_999


def test_no_answer_is_free():
    v = rated(missed("acme"))
    assert (v.billable, v.rule, v.leg_index) == (False, R.Value("DECISION_RULE_FREE_NO_ANSWER"), None)


def test_homeowner_hangs_up_before_30_seconds_is_free():
    v = rated(connected("acme", 12.0, hangup=pb.HANGUP_SIDE_CALLER))
    assert (v.billable, v.rule) == (False, R.Value("DECISION_RULE_FREE_UNDER_30S"))


def test_voicemail_is_never_billed_however_long_the_message():
    v = rated(connected("acme", 600.0, by=pb.ANSWERED_BY_VOICEMAIL))
    assert (v.billable, v.rule, v.leg_index) == (False, R.Value("DECISION_RULE_FREE_VOICEMAIL"), 0)


def test_the_call_cascaded_past_this_contractor_is_free_for_them():
    v = rated(missed("primary"), connected("backup", 45.0, answered=25.0))
    assert v.legs[0].rule == R.Value("DECISION_RULE_FREE_CASCADED_PAST") and not v.legs[0].billable
    assert v.payer_contractor_id == "backup" and v.leg_index == 1


def test_homeowner_did_not_book_still_counts_as_a_connection():
    # Nothing about booking is part of the facts: qualifying for 30 s is the connection that is billed.
    assert rated(connected("acme", 31.0)).billable


def test_drop_at_minute_four_is_billable():
    v = rated(connected("acme", 240.0, hangup=pb.HANGUP_SIDE_NETWORK))
    assert (v.billable, v.rule) == (True, R.Value("DECISION_RULE_BILLABLE_DROPPED_AFTER_30S"))


def test_drop_before_30_seconds_is_free():
    assert not rated(connected("acme", 29.0, hangup=pb.HANGUP_SIDE_NETWORK)).billable


def test_only_the_contractor_who_actually_connected_pays():
    v = rated(missed("primary"), missed("backup-1", rang=21.0, ended=41.0), connected("backup-2", 90.0, answered=45))
    assert v.payer_contractor_id == "backup-2"
    assert [leg_v.billable for leg_v in v.legs] == [False, False, True]


def test_a_call_is_charged_at_most_once_to_at_most_one_contractor():
    v = rated(connected("first", 60.0), connected("second", 60.0, answered=70.0))
    assert v.payer_contractor_id == "first"
    assert v.legs[1].rule == R.Value("DECISION_RULE_FREE_ONE_CHARGE_PER_CALL")
    assert sum(leg_v.billable for leg_v in v.legs) == 1


def test_ai_mode_calls_are_not_billed_per_call():
    v = rated(connected("robo", 300.0, by=pb.ANSWERED_BY_AI_AGENT), mode=pb.CALL_MODE_AI_AGENT)
    assert (v.billable, v.rule) == (False, R.Value("DECISION_RULE_FREE_AI_MODE"))


def test_a_human_backup_after_an_ai_leg_in_a_mixed_cascade_pays_as_human():
    v = rated(connected("robo", 10.0, by=pb.ANSWERED_BY_AI_AGENT, mode=pb.CALL_MODE_AI_AGENT),
              connected("human", 45.0, answered=20.0))
    assert v.payer_contractor_id == "human"
    assert v.legs[0].rule == R.Value("DECISION_RULE_FREE_AI_MODE")


def test_a_call_that_rang_nobody_is_free():
    v = rated()
    assert (v.billable, v.rule) == (False, R.Value("DECISION_RULE_FREE_NO_LEGS"))


def test_every_decision_says_which_rule_and_figures_in_words():
    c = call(missed("primary"), connected("backup", 47.2, answered=25.0))
    v = policy.rate_call(c)
    import datetime as dt
    text = policy.explain(c, v, 4500, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert "backup pays $45.00" in text and "47.200 s" in text and "cascaded" in text


@pytest.mark.parametrize(
    "bad, field",
    [
        (lambda c: c.legs[0].ended_at.CopyFrom(c.legs[0].rang_at)
         or setattr(c.legs[0].ended_at, "seconds", c.legs[0].rang_at.seconds - 1), "ended_at"),
        (lambda c: setattr(c.legs[0].answered_at, "seconds", c.legs[0].rang_at.seconds - 1), "answered_at"),
        (lambda c: setattr(c, "mode", pb.CALL_MODE_UNSPECIFIED), "mode"),
        (lambda c: setattr(c, "mode", 42), "mode"),
        (lambda c: setattr(c, "zip", "941"), "zip"),
        (lambda c: setattr(c, "caller_number", "555-0123"), "caller_number"),
        (lambda c: c.legs[0].ClearField("answered_at"), "answered_at"),
        (lambda c: setattr(c.legs[0], "answered_by", pb.ANSWERED_BY_UNSPECIFIED), "answered_by"),
        (lambda c: setattr(c.legs[0].rang_at, "seconds", c.started_at.seconds - 10), "rang_at"),
        (lambda c: setattr(c.legs[0], "answered_by", pb.ANSWERED_BY_AI_AGENT), "answered_by"),
    ],
)
def test_inconsistent_calls_are_refused_with_the_field_named(bad, field):
    c = call(connected("acme", 45.0))
    bad(c)
    with pytest.raises(InvalidArgument) as info:
        policy.validate_call(c)
    assert field in info.value.message
