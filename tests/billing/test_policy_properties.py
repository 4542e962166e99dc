"""Properties of the policy over generated calls: whatever the engine reports, the invariants hold."""

from hypothesis import given, settings
from hypothesis import strategies as st

from callersync.billing.v1 import billing_pb2 as pb
from services.billing import policy
from tests.billing.calls import call, leg

ANSWERS = [pb.ANSWERED_BY_NONE, pb.ANSWERED_BY_PERSON, pb.ANSWERED_BY_VOICEMAIL]
HANGUPS = [pb.HANGUP_SIDE_CALLER, pb.HANGUP_SIDE_CONTRACTOR, pb.HANGUP_SIDE_NETWORK, pb.HANGUP_SIDE_ENGINE]


@st.composite
def legs(draw):
    """A cascade: each leg rings after the previous one ended; times in milliseconds around the 30 s line."""
    out, clock = [], draw(st.integers(0, 5_000))
    for i in range(draw(st.integers(0, 4))):
        by = draw(st.sampled_from(ANSWERS))
        ring_ms = draw(st.integers(0, 25_000))
        connected_ms = draw(st.one_of(st.integers(29_990, 30_010), st.integers(0, 600_000)))
        rang = clock
        if by == pb.ANSWERED_BY_NONE:
            out.append(leg(f"c{i}", rang / 1000, (rang + ring_ms) / 1000, hangup=pb.HANGUP_SIDE_ENGINE))
            clock = rang + ring_ms
        else:
            answered = rang + ring_ms
            out.append(leg(f"c{i}", rang / 1000, (answered + connected_ms) / 1000, answered / 1000, by=by,
                           hangup=draw(st.sampled_from(HANGUPS))))
            clock = answered + connected_ms
    return out


@st.composite
def calls(draw, mode=None):
    return call(*draw(legs()), mode=mode or draw(st.sampled_from([pb.CALL_MODE_HUMAN, pb.CALL_MODE_AI_AGENT])))


@settings(max_examples=300, deadline=None)
@given(calls())
def test_never_more_than_one_charge_per_call(c):
    policy.validate_call(c)
    v = policy.rate_call(c)
    assert sum(leg_v.billable for leg_v in v.legs) == (1 if v.billable else 0)


@settings(max_examples=300, deadline=None)
@given(calls(mode=pb.CALL_MODE_HUMAN))
def test_the_payer_is_always_a_leg_a_person_answered_for_30_seconds_or_more(c):
    v = policy.rate_call(c)
    if v.billable:
        paying = c.legs[v.leg_index]
        assert paying.contractor_id == v.payer_contractor_id
        assert paying.answered_by == pb.ANSWERED_BY_PERSON
        assert policy.connected_ns(paying) >= policy.BILLABLE_NS
    else:
        assert v.payer_contractor_id == ""


@settings(max_examples=300, deadline=None)
@given(calls(mode=pb.CALL_MODE_HUMAN))
def test_a_human_call_is_billable_exactly_when_some_person_leg_reached_30_seconds(c):
    reached = [
        leg_ for leg_ in c.legs
        if leg_.answered_by == pb.ANSWERED_BY_PERSON and policy.connected_ns(leg_) >= policy.BILLABLE_NS
    ]
    assert policy.rate_call(c).billable == bool(reached)


@settings(max_examples=200, deadline=None)
@given(calls())
def test_voicemail_is_never_billed(c):
    v = policy.rate_call(c)
    for leg_v, leg_ in zip(v.legs, c.legs, strict=True):
        if leg_.answered_by == pb.ANSWERED_BY_VOICEMAIL:
            assert not leg_v.billable


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(29_999_000_000, 30_001_000_000), st.integers(0, 300_000_000_000)))
def test_the_30_second_boundary_is_exact_to_the_nanosecond(connected_ns):
    c = call(leg("acme", 0.0, 0.0, 0.0))
    end_ns = c.legs[0].answered_at.seconds * 1_000_000_000 + c.legs[0].answered_at.nanos + connected_ns
    c.legs[0].ended_at.seconds, c.legs[0].ended_at.nanos = divmod(end_ns, 1_000_000_000)
    policy.validate_call(c)
    assert policy.rate_call(c).billable == (connected_ns >= 30_000_000_000)


@settings(max_examples=100, deadline=None)
@given(calls(mode=pb.CALL_MODE_AI_AGENT))
def test_ai_mode_calls_are_never_billed_per_call(c):
    for leg_ in c.legs:
        if leg_.answered_by == pb.ANSWERED_BY_PERSON:
            leg_.answered_by = pb.ANSWERED_BY_AI_AGENT
    policy.validate_call(c)
    assert not policy.rate_call(c).billable
