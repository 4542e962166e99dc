"""Checks every service applies to the ids it is given, so an id one service accepts no other refuses."""

from __future__ import annotations

import re

from services.runtime.errors import InvalidArgument

MAX_ID_LEN = 128
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")


def require_id(name: str, value: str, max_len: int = MAX_ID_LEN) -> None:
    """1 to max_len printable characters (no control characters, PostgreSQL cannot store NUL) and no
    surrounding spaces (an id that differs only by them is a typo waiting to split one contractor in two)."""
    if not value:
        raise InvalidArgument(f"{name} is required", reason="MISSING_FIELD", field=name)
    if len(value) > max_len or not _PRINTABLE.match(value) or value != value.strip():
        raise InvalidArgument(
            f"{name} must be 1-{max_len} printable characters, without control characters or surrounding spaces",
            reason="MALFORMED_FIELD",
            field=name,
        )
