"""What the demo saw, per contractor, and the summary it prints at the end. Figures come only from the
services' answers (decisions, bookings, refund cases, wallets), never from a database."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

from services.runtime.money import dollars


@dataclasses.dataclass
class Tally:
    name: str
    contractor_id: str
    mode: str
    topped_up_cents: int = 0
    offered: int = 0  # times routing offered them a call (a leg rung)
    billable: int = 0  # calls they paid for
    free: int = 0  # legs rung that cost them nothing
    bookings: int = 0
    charged_cents: int = 0  # call prices plus booking fees
    refunded_cents: int = 0
    balance_cents: int | None = None
    skipped: Counter = dataclasses.field(default_factory=Counter)  # routing's skip reasons, by name
    paused_since: float | None = None
    paused_s: float = 0.0
    pauses: int = 0
    resumes: int = 0
    still_paused: bool = False

    def pause(self, now: float | None = None) -> bool:
        """True when this is news (the demo had not seen them paused)."""
        if self.paused_since is not None:
            return False
        self.paused_since = time.monotonic() if now is None else now
        self.pauses += 1
        return True

    def resume(self, now: float | None = None) -> bool:
        if self.paused_since is None:
            return False
        self.paused_s += (time.monotonic() if now is None else now) - self.paused_since
        self.paused_since = None
        self.resumes += 1
        return True

    def close(self, now: float | None = None) -> None:
        if self.paused_since is not None:
            self.paused_s += (time.monotonic() if now is None else now) - self.paused_since
            self.paused_since = None
            self.still_paused = True

    def expected_balance(self) -> int:
        return self.topped_up_cents - self.charged_cents + self.refunded_cents

    def paused_text(self) -> str:
        if not self.pauses:
            return "-"
        missed = self.skipped.get("PAUSED", 0)
        state = "still paused" if self.still_paused else "resumed"
        return f"{self.paused_s:.1f}s, {missed} missed, {state}"


COLUMNS = (
    "contractor",
    "mode",
    "offered",
    "billable",
    "free",
    "bookings",
    "charged",
    "refunded",
    "balance",
    "paused",
)


def table(tallies: list[Tally]) -> list[str]:
    rows: list[tuple[str, ...]] = [COLUMNS]
    for t in tallies:
        rows.append(
            (
                t.name,
                "AI agent" if t.mode == "ai_agent" else "human",
                str(t.offered),
                str(t.billable),
                str(t.free),
                str(t.bookings),
                dollars(t.charged_cents),
                dollars(t.refunded_cents),
                "?" if t.balance_cents is None else dollars(t.balance_cents),
                t.paused_text(),
            )
        )
    total = (
        "TOTAL",
        "",
        *(str(sum(getattr(t, f) for t in tallies)) for f in ("offered", "billable", "free", "bookings")),
        dollars(sum(t.charged_cents for t in tallies)),
        dollars(sum(t.refunded_cents for t in tallies)),
        dollars(sum(t.balance_cents or 0 for t in tallies)),
        "",
    )
    rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    numeric = set(range(2, 9))

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(rows[0]), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1])]


def skip_lines(tallies: list[Tally]) -> list[str]:
    out = []
    for t in tallies:
        if t.skipped:
            reasons = ", ".join(
                f"{reason.lower().replace('_', ' ')} x{n}" for reason, n in sorted(t.skipped.items())
            )
            out.append(f"  {t.name}: skipped by routing: {reasons}")
    return out
