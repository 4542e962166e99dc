"""The rules of ZIP claims, as plain functions (no I/O); the pause line is services/runtime/pause_line.py."""

from __future__ import annotations

import dataclasses

from services.runtime import validation
from services.runtime.errors import FailedPrecondition, InvalidArgument

PRIMARY = "primary"
BACKUP = "backup"


@dataclasses.dataclass(frozen=True)
class Slot:
    """One claim's place in a ZIP's cascade."""

    contractor_id: str
    position: str
    backup_rank: int


# Routing has always refused a malformed ZIP or number with the generic reason (INVALIDARGUMENT), not the
# specific one billing gives: kept, as clients may match it.
def require_zip(value: str, name: str = "zip") -> str:
    return validation.require_zip(value, name, reason="")


def require_e164(value: str, name: str = "caller_number") -> str:
    return validation.require_e164(value, name, reason="")


def apply_claim(current: list[Slot], contractor_id: str, position: str, backup_rank: int,
                max_backups: int) -> list[Slot]:
    """The ZIP's slots after contractor_id claims `position` (backup_rank 0: append last).

    A repeat of the same claim changes nothing; another position moves the claim. A primary slot held by
    someone else, or a full backup list, is refused."""
    if backup_rank < 0:
        raise InvalidArgument("backup_rank must be 0 (append last) or a 1-based rank", field="backup_rank")
    if position == PRIMARY and backup_rank:
        raise InvalidArgument("backup_rank applies to backups only; leave it 0 for the primary", field="backup_rank")
    mine = next((s for s in current if s.contractor_id == contractor_id), None)
    others = [s for s in current if s.contractor_id != contractor_id]
    primary = next((s for s in others if s.position == PRIMARY), None)
    backups = [s.contractor_id for s in sorted(others, key=lambda s: s.backup_rank) if s.position == BACKUP]
    if position == PRIMARY:
        if primary is not None:
            raise FailedPrecondition(
                f"the primary slot of this ZIP is held by {primary.contractor_id!r}; claim it as a backup, "
                "or wait until the primary is released",
                reason="PRIMARY_SLOT_TAKEN",
            )
        return [Slot(contractor_id, PRIMARY, 0)] + _ranked(backups)
    if mine is not None and mine.position == BACKUP and backup_rank in (0, mine.backup_rank):
        return list(current)  # the same claim again
    if len(backups) >= max_backups:
        raise FailedPrecondition(
            f"this ZIP already has the maximum of {max_backups} backups; ask again when one is released",
            reason="BACKUP_LIST_FULL",
        )
    at = len(backups) if backup_rank == 0 else min(backup_rank - 1, len(backups))
    backups.insert(at, contractor_id)
    return ([primary] if primary else []) + _ranked(backups)


def release_claim(current: list[Slot], contractor_id: str) -> list[Slot]:
    """Later backups move up one rank; a released primary slot stays open."""
    primary = [s for s in current if s.position == PRIMARY and s.contractor_id != contractor_id]
    backups = [s.contractor_id for s in sorted(current, key=lambda s: s.backup_rank)
               if s.position == BACKUP and s.contractor_id != contractor_id]
    return primary + _ranked(backups)


def _ranked(backups: list[str]) -> list[Slot]:
    return [Slot(cid, BACKUP, rank) for rank, cid in enumerate(backups, start=1)]


def cascade_order(slots: list[Slot]) -> list[Slot]:
    """Primary first, then backups by rank."""
    return sorted(slots, key=lambda s: (s.position != PRIMARY, s.backup_rank))
