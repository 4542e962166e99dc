"""The rate card's rules: what a valid rate or fee change is, and when a change would reprice the past."""

from __future__ import annotations

import base64
import datetime as dt
import re

from services.runtime.errors import FailedPrecondition, InvalidArgument
from services.runtime.validation import require_id

ZIP = re.compile(r"^[0-9]{5}$")
# No call or booking above $10,000: a typo guard far inside int64.
MAX_PRICE_CENTS = 1_000_000
DEFAULT_RATE_PAGE = 100
MAX_RATE_PAGE = 1000


def require_zip(zip_code: str, field: str = "zip") -> None:
    if not ZIP.match(zip_code):
        raise InvalidArgument(f"{field} must be a 5-digit US ZIP code like 94103; got {zip_code!r}",
                              reason="MALFORMED_ZIP", field=field)


def require_price(name: str, cents: int) -> None:
    if not 0 < cents <= MAX_PRICE_CENTS:
        raise InvalidArgument(
            f"{name} must be between 1 and {MAX_PRICE_CENTS} cents; got {cents}",
            reason="AMOUNT_OUT_OF_RANGE",
            field=name,
        )


def validate_zip_rate(zip_code: str, rate_cents: int, has_effective_from: bool, set_by: str) -> None:
    require_zip(zip_code)
    require_price("rate_cents", rate_cents)
    if not has_effective_from:
        raise InvalidArgument("effective_from is required: the moment the rate takes over", field="effective_from")
    require_id("set_by", set_by)


def validate_booking_fee(fee_cents: int, has_effective_from: bool, set_by: str) -> None:
    require_price("fee_cents", fee_cents)
    if not has_effective_from:
        raise InvalidArgument("effective_from is required: the moment the fee takes over", field="effective_from")
    require_id("set_by", set_by)


def version_conflict(what: str, existing_cents: int, asked_cents: int, effective_from: dt.datetime,
                     now: dt.datetime) -> FailedPrecondition | None:
    """A version at the same moment with another price may be replaced only while it is still scheduled."""
    if existing_cents == asked_cents or effective_from > now:
        return None
    return FailedPrecondition(
        f"{what} is already {existing_cents} cents from {effective_from.isoformat()}, which has passed; "
        f"a price in effect is never rewritten (rated calls keep their price). Set {asked_cents} cents "
        "from a later moment instead.",
        reason="RATE_VERSION_IN_EFFECT",
    )


def repricing_refused(what: str, effective_from: dt.datetime, first_priced: dt.datetime) -> FailedPrecondition:
    return FailedPrecondition(
        f"{what} from {effective_from.isoformat()} would change the price of calls or bookings already billed "
        f"(the first at {first_priced.isoformat()}); old calls keep their old price. "
        "Choose an effective_from after the last billed one, e.g. now.",
        reason="WOULD_REPRICE_BILLED",
    )


def page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return min(requested or default, maximum)


def encode_token(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


def decode_token(token: str, count: int) -> list[str] | None:
    if not token:
        return None
    try:
        parts = base64.urlsafe_b64decode(token.encode()).decode().split("\x1f")
        if len(parts) == count:
            return parts
    except (ValueError, UnicodeError):
        pass
    raise InvalidArgument("page_token is not one this service issued; start again without it", field="page_token")


def encode_position(key: str, at: dt.datetime) -> str:
    """A page token: the (key, moment) the next page starts after (or before, for newest-first lists)."""
    return encode_token(key, at.isoformat())


def decode_position(token: str) -> tuple[str, dt.datetime] | None:
    parts = decode_token(token, 2)
    if parts is None:
        return None
    try:
        return parts[0], dt.datetime.fromisoformat(parts[1])
    except ValueError:
        raise InvalidArgument("page_token is not one this service issued; start again without it",
                              field="page_token") from None
