"""Billing's own knobs, read from CALLERSYNC_* variables (shared settings stay in the runtime)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from services.billing.freshness import FactLimits


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclasses.dataclass(frozen=True)
class BillingConfig:
    # Refunds are asked within this many days of the charge (a booking is charged at its scheduled_at).
    refund_window_days: int = dataclasses.field(default=30, metadata=_env("CALLERSYNC_REFUND_WINDOW_DAYS"))
    # The sweeper looks this often for settlements left unfinished (a crash, a wallet outage), and re-drives
    # those at least this old, so it never races a request still settling its own.
    settlement_sweep_interval_ms: int = dataclasses.field(
        default=2000, metadata=_env("CALLERSYNC_SETTLEMENT_SWEEP_INTERVAL_MS"))
    settlement_sweep_after_ms: int = dataclasses.field(
        default=10_000, metadata=_env("CALLERSYNC_SETTLEMENT_SWEEP_AFTER_MS"))
    # Facts from the future (services/billing/freshness.py): the clock skew tolerated between the sender and
    # billing, how far after its booking an appointment may lie, the earliest moment a price may take effect
    # (2020-01-01T00:00:00Z, before any CallerSync call).
    clock_skew_s: int = dataclasses.field(default=60, metadata=_env("CALLERSYNC_CLOCK_SKEW_S"))
    appointment_max_ahead_days: int = dataclasses.field(
        default=400, metadata=_env("CALLERSYNC_APPOINTMENT_MAX_AHEAD_DAYS"))
    rate_earliest_s: int = dataclasses.field(default=1_577_836_800, metadata=_env("CALLERSYNC_RATE_EARLIEST_S"))
    # Refunds approved at once (a charge without a recording) per contractor per rolling 30 days; the rest
    # wait for an operator.
    refund_auto_approvals_per_30d: int = dataclasses.field(
        default=5, metadata=_env("CALLERSYNC_REFUND_AUTO_APPROVALS_PER_30D"))
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

    def fact_limits(self) -> FactLimits:
        return FactLimits(self.clock_skew_s, self.appointment_max_ahead_days, self.rate_earliest_s)
