"""The rate card's rules: what a valid rate or fee change is, and when a change would reprice the past."""

from __future__ import annotations

import datetime as dt

from services.runtime.errors import FailedPrecondition, InvalidArgument
from services.runtime.validation import require_id, require_zip

# No call or booking above $10,000: a typo guard far inside int64.
MAX_PRICE_CENTS = 1_000_000


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
