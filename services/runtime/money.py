"""Money in words: integer cents as dollars, exactly (no float rounding on the way)."""

from __future__ import annotations

# The typographic minus the web pages print, so a negative amount reads as one and never breaks after the dash.
MINUS_SIGN = "\u2212"


def dollars(cents: int, minus: str = "-") -> str:
    """-1234567 -> '-$12,345.67' (with minus=MINUS_SIGN, '−$12,345.67')."""
    sign = minus if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def decimal_dollars(cents: int) -> str:
    """-1234567 -> '-12345.67': the amount as a plain number, for a CSV cell or a form field."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
