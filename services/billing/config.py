"""Billing's own knobs, read from CALLERSYNC_* variables (shared settings stay in the runtime)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclasses.dataclass(frozen=True)
class BillingConfig:
    # Refunds are asked within this many days of the charge (a booking is charged at its scheduled_at).
    refund_window_days: int = dataclasses.field(default=30, metadata=_env("CALLERSYNC_REFUND_WINDOW_DAYS"))
    # A refund approval above this many cents needs a second operator (0: one approval always suffices).
    refund_second_approval_cents: int = dataclasses.field(
        default=10_000, metadata=_env("CALLERSYNC_REFUND_SECOND_APPROVAL_CENTS"))
    # The sweeper looks this often for settlements left unfinished (a crash, a wallet outage), and re-drives
    # those at least this old, so it never races a request still settling its own.
    settlement_sweep_interval_ms: int = dataclasses.field(
        default=2000, metadata=_env("CALLERSYNC_SETTLEMENT_SWEEP_INTERVAL_MS"))
    settlement_sweep_after_ms: int = dataclasses.field(
        default=10_000, metadata=_env("CALLERSYNC_SETTLEMENT_SWEEP_AFTER_MS"))
    # Tests only: the crash hook's file (services/billing/fault.py); empty turns it off.
    fault_file: str = dataclasses.field(default="", metadata=_env("CALLERSYNC_FAULT_FILE"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BillingConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.metadata["env"]
            raw = env.get(name, "")
            if not raw:
                continue
            if field.type == "str":
                values[field.name] = raw
                continue
            try:
                values[field.name] = int(raw)
            except ValueError:
                raise SystemExit(f"{name}={raw!r} is not an integer") from None
        return cls(**values)
