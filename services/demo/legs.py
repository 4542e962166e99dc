"""Turning the engine's side of a call into billing's facts: what each rung candidate did (a leg), and the
legs laid out in time so the call ends now. Plain functions: no I/O."""

from __future__ import annotations

import dataclasses

from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as bpb
from services.demo import scenario
from services.demo.scenario import Ring

GAP_NS = 1_000_000_000  # a second between one leg ending and the next ringing
AI_PICKUP_MS = 2000
WORDS = {
    scenario.VOICEMAIL: "voicemail took a message",
    scenario.DROPPED: "line dropped after",
    scenario.SHORT: "caller hung up after",
    scenario.CONNECTED: "answered, talked",
}


def stamp(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


@dataclasses.dataclass(frozen=True)
class LegSpec:
    contractor_id: str
    reservation_id: str
    mode: int  # billing CallMode
    ring_ms: int
    answered_by: int  # billing AnsweredBy
    talk_ms: int
    hangup: int  # billing HangupSide

    @property
    def answered(self) -> bool:
        return self.answered_by != bpb.ANSWERED_BY_NONE


def ai_leg(contractor_id: str, reservation_id: str, talk_s: float) -> LegSpec:
    return LegSpec(
        contractor_id,
        reservation_id,
        bpb.CALL_MODE_AI_AGENT,
        AI_PICKUP_MS,
        bpb.ANSWERED_BY_AI_AGENT,
        round(talk_s * 1000),
        bpb.HANGUP_SIDE_CALLER,
    )


def human_leg(contractor_id: str, reservation_id: str, ring: Ring) -> LegSpec:
    ring_ms, talk_ms = round(ring.ring_s * 1000), round(ring.talk_s * 1000)
    if (
        ring.kind not in scenario.ANSWERING
    ):  # rang out (the engine stopped it) or declined (the contractor did)
        hangup = bpb.HANGUP_SIDE_ENGINE if ring.kind == scenario.NO_ANSWER else bpb.HANGUP_SIDE_CONTRACTOR
        return LegSpec(
            contractor_id, reservation_id, bpb.CALL_MODE_HUMAN, ring_ms, bpb.ANSWERED_BY_NONE, 0, hangup
        )
    answered_by = bpb.ANSWERED_BY_VOICEMAIL if ring.kind == scenario.VOICEMAIL else bpb.ANSWERED_BY_PERSON
    if ring.kind == scenario.DROPPED:
        hangup = bpb.HANGUP_SIDE_NETWORK
    elif ring.kind == scenario.CONNECTED and talk_ms % 2:  # either side ends a good conversation
        hangup = bpb.HANGUP_SIDE_CONTRACTOR
    else:
        hangup = bpb.HANGUP_SIDE_CALLER
    return LegSpec(contractor_id, reservation_id, bpb.CALL_MODE_HUMAN, ring_ms, answered_by, talk_ms, hangup)


def describe(who: str, leg: LegSpec, ring: Ring | None, books: bool = False) -> str:
    if leg.mode == bpb.CALL_MODE_AI_AGENT:
        return f"{who}'s AI agent answered, {leg.talk_ms / 1000:.0f} s" + (
            ", booked a visit" if books else ""
        )
    assert ring is not None
    if not leg.answered:
        return f"{who} {ring.kind.replace('_', ' ')}"
    if ring.kind == scenario.VOICEMAIL:
        return f"{who} {WORDS[ring.kind]}"
    return f"{who} {WORDS[ring.kind]} {leg.talk_ms / 1000:.1f} s"


def lay_out(legs: list[LegSpec], end_ns: int) -> tuple[int, list[bpb.Leg]]:
    """Places the legs one after another so the call ends at end_ns; returns started_at and the legs. Times
    are whole milliseconds apart, so a 30.000 s conversation is exactly that."""
    total = GAP_NS + sum((leg.ring_ms + leg.talk_ms) * 1_000_000 + GAP_NS for leg in legs)
    started = end_ns - total
    at = started + GAP_NS
    out = []
    for leg in legs:
        answered = at + leg.ring_ms * 1_000_000
        ended = answered + leg.talk_ms * 1_000_000
        out.append(
            bpb.Leg(
                contractor_id=leg.contractor_id,
                rang_at=stamp(at),
                ended_at=stamp(ended),
                answered_at=stamp(answered) if leg.answered else None,
                answered_by=leg.answered_by,
                reservation_id=leg.reservation_id,
                hangup_side=leg.hangup,
                mode=leg.mode,
            )
        )
        at = ended + GAP_NS
    return started, out
