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


_ZIP = re.compile(r"[0-9]{5}")
# E.164: a plus, a country code not starting with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_zip(value: str) -> bool:
    """A 5-digit US ZIP code, ASCII digits only."""
    return _ZIP.fullmatch(value) is not None


def is_e164(value: str) -> bool:
    return _E164.fullmatch(value) is not None


def require_zip(value: str, field: str = "zip", reason: str = "MALFORMED_ZIP") -> str:
    """A 5-digit US ZIP code. `reason` stays what each service has always answered (clients may match it)."""
    if not is_zip(value):
        raise InvalidArgument(f"{field} must be a US ZIP code of five digits, e.g. 94103; got {value!r}",
                              reason=reason, field=field)
    return value


def require_e164(value: str, field: str = "caller_number", reason: str = "MALFORMED_FIELD") -> str:
    if not is_e164(value):
        raise InvalidArgument(
            f"{field} must be an E.164 number: a plus, the country code and the number, digits only, "
            f"e.g. +14155550123; got {value!r}",
            reason=reason, field=field,
        )
    return value


def require_text(field: str, value: str, max_len: int) -> None:
    """Free text (notes, descriptions): bounded, and without NUL, which PostgreSQL cannot store."""
    if len(value) > max_len or "\x00" in value:
        raise InvalidArgument(f"{field} must be at most {max_len} characters without NUL bytes", field=field)
