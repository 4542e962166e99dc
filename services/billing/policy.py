"""The billing policy (product.md, "Which calls are billable") as plain functions over a finished call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from callersync.billing.v1 import billing_pb2 as pb
from services.runtime import timestamps
from services.runtime.errors import InvalidArgument
from services.runtime.money import dollars
from services.runtime.timestamps import set_stamp
from services.runtime.validation import require_e164, require_id, require_zip

# Policy: "both sides stayed connected for 30 seconds or longer. 30.000 s is billable, 29.999 s is free."
BILLABLE_NS = 30 * 1_000_000_000
MAX_LEGS = 50
MAX_URI_LEN = 2000
_MODES = (pb.CALL_MODE_HUMAN, pb.CALL_MODE_AI_AGENT)
_ANSWERS = (pb.ANSWERED_BY_NONE, pb.ANSWERED_BY_PERSON, pb.ANSWERED_BY_VOICEMAIL, pb.ANSWERED_BY_AI_AGENT)
_HANGUPS = tuple(pb.HangupSide.values())


@dataclasses.dataclass(frozen=True)
class LegVerdict:
    leg_index: int
    contractor_id: str
    billable: bool
    rule: int  # pb.DecisionRule
    connected_ns: int

    @property
    def connected_ms(self) -> int:
        return self.connected_ns // 1_000_000


@dataclasses.dataclass(frozen=True)
class Verdict:
    billable: bool
    rule: int
    payer_contractor_id: str
    leg_index: int | None  # the payer's leg, else the longest answered; None when nobody answered
    connected_ns: int
    legs: tuple[LegVerdict, ...]

    @property
    def connected_ms(self) -> int:
        return self.connected_ns // 1_000_000


def nanos(ts) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def leg_mode(call: pb.FinishedCall, leg: pb.Leg) -> int:
    """A leg's own mode when a cascade mixed modes; otherwise the call's."""
    return leg.mode or call.mode


def _invalid(field: str, message: str, reason: str = "INCONSISTENT_CALL") -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", reason=reason, field=field)


def validate_call(call: pb.FinishedCall) -> None:
    """Refuses facts that cannot describe a real call, before anything is written."""
    require_id("call_id", call.call_id)
    require_zip(call.zip)
    require_e164(call.caller_number)
    if not call.HasField("started_at"):
        raise _invalid("started_at", "is required: it picks the rate", "MISSING_FIELD")
    timestamps.check("started_at", call.started_at)
    if call.mode not in _MODES:
        raise _invalid("mode", f"unknown mode {call.mode}; send CALL_MODE_HUMAN or CALL_MODE_AI_AGENT", "UNKNOWN_MODE")
    if len(call.legs) > MAX_LEGS:
        raise _invalid("legs", f"at most {MAX_LEGS} legs per call; got {len(call.legs)}")
    if call.HasField("recording"):
        require_id("recording.uri", call.recording.uri, MAX_URI_LEN)
    if call.transcript_uri:
        require_id("transcript_uri", call.transcript_uri, MAX_URI_LEN)
    started = nanos(call.started_at)
    for i, leg in enumerate(call.legs):
        _validate_leg(call, f"legs[{i}]", leg, started)


def _validate_leg(call: pb.FinishedCall, name: str, leg: pb.Leg, started: int) -> None:
    require_id(f"{name}.contractor_id", leg.contractor_id)
    if leg.reservation_id:
        require_id(f"{name}.reservation_id", leg.reservation_id)
    for stamp in ("rang_at", "ended_at"):
        if not leg.HasField(stamp):
            raise _invalid(f"{name}.{stamp}", "is required", "MISSING_FIELD")
        timestamps.check(f"{name}.{stamp}", getattr(leg, stamp))
    timestamps.check(f"{name}.answered_at", leg.answered_at)  # unset reads as the epoch, which is in range
    if leg.answered_by not in _ANSWERS:
        raise _invalid(f"{name}.answered_by", f"unknown value {leg.answered_by}; send ANSWERED_BY_NONE when nobody "
                       "picked up")
    if leg.mode not in (pb.CALL_MODE_UNSPECIFIED, *_MODES):
        raise _invalid(f"{name}.mode", f"unknown mode {leg.mode}", "UNKNOWN_MODE")
    if leg.hangup_side not in _HANGUPS:
        raise _invalid(f"{name}.hangup_side", f"unknown value {leg.hangup_side}")
    rang, ended = nanos(leg.rang_at), nanos(leg.ended_at)
    if rang < started:
        raise _invalid(f"{name}.rang_at", "is before the call's started_at: a leg cannot ring before the call began")
    if ended < rang:
        raise _invalid(f"{name}.ended_at", "is before rang_at: a leg cannot end before it starts")
    answered = leg.HasField("answered_at")
    if leg.answered_by == pb.ANSWERED_BY_NONE:
        if answered:
            raise _invalid(f"{name}.answered_at", "is set but answered_by is ANSWERED_BY_NONE; send who answered")
        return
    if not answered:
        raise _invalid(f"{name}.answered_at", "is required when the leg was answered (connected time starts there)",
                       "MISSING_FIELD")
    answer = nanos(leg.answered_at)
    if answer < rang:
        raise _invalid(f"{name}.answered_at", "is before rang_at: a leg cannot be answered before it rang")
    if answer > ended:
        raise _invalid(f"{name}.answered_at", "is after ended_at: a leg cannot be answered after it ended")
    if leg.answered_by == pb.ANSWERED_BY_AI_AGENT and leg_mode(call, leg) != pb.CALL_MODE_AI_AGENT:
        raise _invalid(f"{name}.answered_by", "is ANSWERED_BY_AI_AGENT on a leg in human mode; set the leg's mode")


def connected_ns(leg: pb.Leg) -> int:
    """Policy: "Connected time runs from the moment the leg was answered to the moment either side hung up"."""
    if leg.answered_by == pb.ANSWERED_BY_NONE or not leg.HasField("answered_at"):
        return 0
    return nanos(leg.ended_at) - nanos(leg.answered_at)


def _leg_rule(call: pb.FinishedCall, index: int, leg: pb.Leg) -> tuple[bool, int]:
    if leg_mode(call, leg) == pb.CALL_MODE_AI_AGENT:
        return False, pb.DECISION_RULE_FREE_AI_MODE  # AI mode bills per booking, never per call
    if leg.answered_by == pb.ANSWERED_BY_NONE:
        last = index == len(call.legs) - 1
        return False, pb.DECISION_RULE_FREE_NO_ANSWER if last else pb.DECISION_RULE_FREE_CASCADED_PAST
    if leg.answered_by == pb.ANSWERED_BY_VOICEMAIL:
        return False, pb.DECISION_RULE_FREE_VOICEMAIL  # however long the message
    if connected_ns(leg) < BILLABLE_NS:
        return False, pb.DECISION_RULE_FREE_UNDER_30S
    if leg.hangup_side == pb.HANGUP_SIDE_NETWORK:
        return True, pb.DECISION_RULE_BILLABLE_DROPPED_AFTER_30S
    return True, pb.DECISION_RULE_BILLABLE_CONNECTED_30S


def rate_call(call: pb.FinishedCall) -> Verdict:
    """Decides a validated call. At most one leg pays: the first, in ring order, that connected 30 s or more."""
    legs: list[LegVerdict] = []
    payer: LegVerdict | None = None
    for i, leg in enumerate(call.legs):
        billable, rule = _leg_rule(call, i, leg)
        if billable and payer is not None:
            billable, rule = False, pb.DECISION_RULE_FREE_ONE_CHARGE_PER_CALL
        verdict = LegVerdict(i, leg.contractor_id, billable, rule, connected_ns(leg))
        payer = payer or (verdict if billable else None)
        legs.append(verdict)
    if payer is not None:
        return Verdict(True, payer.rule, payer.contractor_id, payer.leg_index, payer.connected_ns, tuple(legs))
    if not legs:
        return Verdict(False, pb.DECISION_RULE_FREE_NO_LEGS, "", None, 0, ())
    answered = [v for v, leg in zip(legs, call.legs, strict=True) if leg.answered_by != pb.ANSWERED_BY_NONE]
    if answered:
        longest = max(answered, key=lambda v: (v.connected_ns, -v.leg_index))
        return Verdict(False, longest.rule, "", longest.leg_index, longest.connected_ns, tuple(legs))
    all_ai = all(v.rule == pb.DECISION_RULE_FREE_AI_MODE for v in legs)
    rule = pb.DECISION_RULE_FREE_AI_MODE if all_ai else pb.DECISION_RULE_FREE_NO_ANSWER
    return Verdict(False, rule, "", None, 0, tuple(legs))


def _seconds(ns: int) -> str:
    return f"{ns // 1_000_000 / 1000:.3f} s"


def _clock(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts.seconds))


_LEG_WORDS = {
    pb.DECISION_RULE_BILLABLE_CONNECTED_30S: "connected {c} (30 s or more): billable",
    pb.DECISION_RULE_BILLABLE_DROPPED_AFTER_30S: "connected {c} before the line dropped; a drop after 30 s is still "
                                                 "billable",
    pb.DECISION_RULE_FREE_NO_ANSWER: "did not answer: free",
    pb.DECISION_RULE_FREE_CASCADED_PAST: "did not answer and the call cascaded to the next contractor: free",
    pb.DECISION_RULE_FREE_VOICEMAIL: "a voicemail or answering machine took the leg ({c}): free however long",
    pb.DECISION_RULE_FREE_UNDER_30S: "connected only {c}, under 30 s: free",
    pb.DECISION_RULE_FREE_AI_MODE: "handled in AI agent mode: billed per booked appointment, not per call",
    pb.DECISION_RULE_FREE_ONE_CHARGE_PER_CALL: "connected {c}, but another contractor already pays for this call: "
                                               "a call is charged at most once",
}


def leg_words(rule: int, connected_ms: int) -> str:
    """One leg's rule in words, as explain() says it."""
    return _LEG_WORDS[rule].format(c=_seconds(connected_ms * 1_000_000))


def explain(call: pb.FinishedCall, verdict: Verdict, rate_cents: int, rate_from: dt.datetime) -> str:
    """The decision in words an on-call engineer can read out to a contractor."""
    if not call.legs:
        return f"Call {call.call_id} to ZIP {call.zip} rang nobody (no candidate, or a blocked caller): free."
    parts = []
    for v, leg in zip(verdict.legs, call.legs, strict=True):
        words = _LEG_WORDS[v.rule].format(c=_seconds(v.connected_ns))
        when = (f"answered at {_clock(leg.answered_at)}" if leg.HasField("answered_at")
                else f"rung at {_clock(leg.rang_at)}")
        parts.append(f"Leg {v.leg_index + 1}: {v.contractor_id}, {when}, {words}.")
    rate = (f"ZIP {call.zip}'s rate in effect when the call started was {dollars(rate_cents)} "
            f"(since {rate_from:%Y-%m-%d}).")
    if verdict.billable:
        head = f"Billable: {verdict.payer_contractor_id} pays {dollars(rate_cents)} for call {call.call_id}."
    else:
        head = f"Free: nobody pays for call {call.call_id}."
    return " ".join([head, *parts, rate])


def decision_message(call: pb.FinishedCall, verdict: Verdict, rate_cents: int, rate_from: dt.datetime,
                     charge_id: str) -> pb.RatingDecision:
    out = pb.RatingDecision(
        call_id=call.call_id,
        billable=verdict.billable,
        rule=verdict.rule,
        payer_contractor_id=verdict.payer_contractor_id,
        connected_ms=verdict.connected_ms,
        rate_cents=rate_cents,
        price_cents=rate_cents if verdict.billable else 0,
        explanation=explain(call, verdict, rate_cents, rate_from),
        charge_id=charge_id if verdict.billable else "",
        legs=[
            pb.LegOutcome(leg_index=v.leg_index, contractor_id=v.contractor_id, billable=v.billable, rule=v.rule,
                          connected_ms=v.connected_ms)
            for v in verdict.legs
        ],
    )
    if verdict.leg_index is not None:
        out.leg_index = verdict.leg_index
    set_stamp(out.rate_effective_from, rate_from)
    return out
