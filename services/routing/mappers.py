"""Routing's proto <-> domain mapping: contract enums to the words routing stores, stored records to messages."""

from __future__ import annotations

from callersync.routing.v1 import routing_pb2 as pb
from services.routing.cascade import SkipReason
from services.routing.claims import BACKUP, PRIMARY
from services.routing.records import BlockedCaller, MissedStep, StoredClaim, StoredProfile
from services.runtime.timestamps import stamp

# Keyed by str: a SkipReason is one, and routing.steps stores its value.
SKIP_PB: dict[str, pb.SkipReason.ValueType] = {
    SkipReason.PAUSED: pb.SKIP_REASON_PAUSED,
    SkipReason.UNAFFORDABLE: pb.SKIP_REASON_UNAFFORDABLE,
    SkipReason.NO_WALLET: pb.SKIP_REASON_NO_WALLET,
    SkipReason.OUTSIDE_HOURS: pb.SKIP_REASON_OUTSIDE_HOURS,
    SkipReason.DAILY_CAP: pb.SKIP_REASON_DAILY_CAP,
    SkipReason.MONTHLY_CAP: pb.SKIP_REASON_MONTHLY_CAP,
    SkipReason.CONCURRENCY_CAP: pb.SKIP_REASON_CONCURRENCY_CAP,
    SkipReason.BUSY: pb.SKIP_REASON_BUSY,
}
POSITION_PB = {PRIMARY: pb.CLAIM_POSITION_PRIMARY, BACKUP: pb.CLAIM_POSITION_BACKUP}
POSITIONS = {v: k for k, v in POSITION_PB.items()}
MODE_PB = {"human": pb.CONTRACTOR_MODE_HUMAN, "ai_agent": pb.CONTRACTOR_MODE_AI_AGENT}
MODES = {v: k for k, v in MODE_PB.items()}
RING_OUTCOMES = {
    pb.RING_OUTCOME_UNSPECIFIED: "no_answer",  # the engine's default: it rang until the timeout
    pb.RING_OUTCOME_NO_ANSWER: "no_answer",
    pb.RING_OUTCOME_BUSY: "busy",
    pb.RING_OUTCOME_DECLINED: "declined",
    pb.RING_OUTCOME_VOICEMAIL: "voicemail",
    pb.RING_OUTCOME_FAILED: "failed",
}
RING_PB = {"no_answer": pb.RING_OUTCOME_NO_ANSWER, "busy": pb.RING_OUTCOME_BUSY, "declined": pb.RING_OUTCOME_DECLINED,
           "voicemail": pb.RING_OUTCOME_VOICEMAIL, "failed": pb.RING_OUTCOME_FAILED}
SOURCE_PB = {"operator": pb.BLOCK_SOURCE_OPERATOR, "spam_refund": pb.BLOCK_SOURCE_SPAM_REFUND}


def claim(row: StoredClaim) -> pb.Claim:
    return pb.Claim(contractor_id=row.contractor_id, zip=row.zip, position=POSITION_PB[row.position],
                    backup_rank=row.backup_rank, rate_cents=row.rate_cents or 0, claimed_at=stamp(row.claimed_at))


def blocked_caller(row: BlockedCaller) -> pb.BlockedCaller:
    return pb.BlockedCaller(caller_number=row.caller_number, source=SOURCE_PB[row.source],
                            blocked_by=row.blocked_by, note=row.note, refund_case_id=row.refund_case_id,
                            blocked_at=stamp(row.blocked_at))


def missed_call(row: MissedStep) -> pb.MissedCall:
    return pb.MissedCall(
        call_id=row.call_id, zip=row.zip, missed_at=stamp(row.at), position=POSITION_PB[row.position],
        skip_reason=SKIP_PB.get(row.skip_reason, pb.SKIP_REASON_UNSPECIFIED),
        ring_outcome=RING_PB.get(row.ring_outcome, pb.RING_OUTCOME_UNSPECIFIED),
        message=row.message, rate_cents=row.rate_cents)


def routing_profile(stored: StoredProfile, connected_today: int, connected_this_month: int) -> pb.RoutingProfile:
    profile = stored.profile
    return pb.RoutingProfile(
        contractor_id=profile.contractor_id,
        mode=MODE_PB[profile.mode],
        schedule=pb.Schedule(time_zone=profile.time_zone, weekly_hours=[
            pb.WeeklyHours(day=w.weekday, start_minute=w.start_minute, end_minute=w.end_minute)
            for w in profile.windows]),
        caps=pb.Caps(daily_max_connected_calls=profile.daily_max_connected_calls,
                     monthly_max_connected_calls=profile.monthly_max_connected_calls,
                     max_concurrent_calls=profile.max_concurrent_calls),
        connected_calls_today=connected_today,
        connected_calls_this_month=connected_this_month,
        pause_threshold_cents=stored.pause_threshold_cents,
        updated_at=stamp(stored.updated_at),
    )
