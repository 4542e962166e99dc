"""The pause line, one rule with two readers: routing keeps it per contractor and pushes it to the wallet, and the
operator console's rate preview asks it what a rate change would do. Plain function, no I/O."""

from __future__ import annotations


def pause_threshold_cents(claimed_rates_cents: list[int], ai_mode: bool, booking_fee_cents: int) -> int:
    """The rate of the most expensive claimed ZIP; in AI mode the booking fee if that is higher.

    Without claims nobody can be offered a call, so there is nothing to pause for: 0."""
    if not claimed_rates_cents:
        return 0
    top = max(claimed_rates_cents)
    return max(top, booking_fee_cents) if ai_mode else top
