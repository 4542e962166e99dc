"""Routing's stored rows as typed records: what storage.py hands to the rule, use-case and mapping modules.

`from_row` picks the named columns, so a migration that adds a column changes nothing here."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from services.routing.schedule import Profile


@dataclasses.dataclass(frozen=True, slots=True)
class StoredClaim:
    zip: str
    contractor_id: str
    position: str  # claims.PRIMARY | claims.BACKUP
    backup_rank: int
    claimed_at: dt.datetime
    rate_cents: int | None  # the ZIP's rate now; None while it has none

    @classmethod
    def from_row(cls, row: Any) -> StoredClaim:
        return cls(row["zip"], row["contractor_id"], row["position"], row["backup_rank"], row["claimed_at"],
                   row["rate_cents"])


@dataclasses.dataclass(frozen=True, slots=True)
class StoredProfile:
    profile: Profile
    pause_threshold_cents: int
    updated_at: dt.datetime | None  # None: never set (the defaults apply)


@dataclasses.dataclass(frozen=True, slots=True)
class BlockedCaller:
    caller_number: str
    source: str  # 'operator' | 'spam_refund'
    blocked_by: str
    note: str
    refund_case_id: str
    blocked_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> BlockedCaller:
        return cls(row["caller_number"], row["source"], row["blocked_by"], row["note"], row["refund_case_id"],
                   row["blocked_at"])


@dataclasses.dataclass(frozen=True, slots=True)
class MissedStep:
    """A routing step that did not reach the contractor: skipped, or rung and not taken."""

    step_id: int
    call_id: str
    zip: str
    at: dt.datetime
    position: str
    skip_reason: str  # a cascade.SkipReason value, or ''
    ring_outcome: str
    message: str
    rate_cents: int

    @classmethod
    def from_row(cls, row: Any) -> MissedStep:
        return cls(row["step_id"], row["call_id"], row["zip"], row["at"], row["position"], row["skip_reason"],
                   row["ring_outcome"], row["message"], row["rate_cents"])
