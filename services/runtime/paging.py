"""Page sizes and page tokens, one format for every service's list RPCs.

A token is the URL-safe base64 of a JSON list: the key(s) of the last row of the page, which the next page
starts after (or before, for newest-first lists). Opaque to clients; they send it back as received."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from services.runtime.errors import InvalidArgument

_FOREIGN = "page_token is not one this service issued; start again without it"
# Billing issued "\x1f"-joined strings before tokens were JSON, the wallet "e:<entry id>"; the ones already handed
# out keep working.
_OLD_SEPARATOR = "\x1f"
_OLD_ID_PREFIX = "e:"

Row = TypeVar("Row")


def page_size(requested: int, default: int, maximum: int) -> int:
    """0 asks for the default; more than the maximum is capped, not refused."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return min(requested or default, maximum)


def page_of(rows: Sequence[Row], size: int, token_of: Callable[[Row], str]) -> tuple[list[Row], str]:
    """A page from `rows` fetched with limit size + 1: the extra row only tells that more follow, and the next
    token ('' on the last page) points after the page's last row."""
    page = list(rows[:size])
    return page, token_of(page[-1]) if len(rows) > size else ""


def encode_token(*parts: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode()


def decode_token(token: str, count: int) -> list[str | int] | None:
    """The token's `count` parts; None for the first page (no token)."""
    decoded = _decode(token, count)
    return None if decoded is None else decoded[0]


def encode_position(key: str | int, at: dt.datetime) -> str:
    """A token for lists ordered by a moment, then a key: (moment, key) of the page's last row."""
    return encode_token(at.isoformat(), key)


def decode_position(token: str, key_type: type[str] | type[int] = str) -> tuple[dt.datetime, str | int] | None:
    decoded = _decode(token, 2)
    if decoded is None:
        return None
    parts, old = decoded
    key, at = parts if old else reversed(parts)  # billing's old tokens put the key first
    try:
        if not isinstance(at, str) or not isinstance(key, key_type):
            raise ValueError
        return dt.datetime.fromisoformat(at), key
    except ValueError:
        raise InvalidArgument(_FOREIGN, field="page_token") from None


def encode_id(last_id: int) -> str:
    """A token for lists ordered by a positive integer id, newest first: the page's last id."""
    return encode_token(last_id)


def decode_id(token: str) -> int | None:
    """The id the next page starts below; None for the first page."""
    decoded = _decode(token, 1)
    if decoded is None:
        return None
    [key], old = decoded
    if old and isinstance(key, str) and key.startswith(_OLD_ID_PREFIX) and key[2:].isdecimal():
        key = int(key[2:])
    if not isinstance(key, int) or key <= 0:
        raise InvalidArgument(_FOREIGN, field="page_token")
    return key


def _decode(token: str, count: int) -> tuple[list[str | int], bool] | None:
    """(parts, whether the token is in billing's old format)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidArgument(_FOREIGN, field="page_token") from None
    try:
        parts, old = json.loads(raw), False
    except ValueError:
        parts, old = raw.split(_OLD_SEPARATOR), True
    if not (isinstance(parts, list) and len(parts) == count
            and all(isinstance(p, str | int) and not isinstance(p, bool) for p in parts)):
        raise InvalidArgument(_FOREIGN, field="page_token")
    return parts, old
