"""Billing's own knobs, read from CALLERSYNC_* variables (shared settings stay in the runtime)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from services.billing.freshness import FactLimits
from services.runtime.config import service_config


@dataclasses.dataclass(frozen=True)
class BillingConfig:
    # Refunds are asked within this many days of the charge (a booking is charged at its scheduled_at).
    refund_window_days: int = 30
    # Refunds approved at once (a charge without a recording) per contractor per rolling 30 days; the rest
    # wait for an operator.
    refund_auto_approvals_per_30d: int = 5
    # A refund approval above this many cents needs a second operator (0: one approval always suffices).
    refund_second_approval_cents: int = 10_000
    # The sweeper looks this often for settlements left unfinished (a crash, a wallet outage), and re-drives
    # those at least this old, so it never races a request still settling its own.
    settlement_sweep_interval_ms: int = 2000
    settlement_sweep_after_ms: int = 10_000
    # Facts from the future (services/billing/freshness.py): the clock skew tolerated between the sender and
    # billing, how far after its booking an appointment may lie, the earliest moment a price may take effect
    # (2020-01-01T00:00:00Z, before any CallerSync call).
    clock_skew_s: int = 60
    appointment_max_ahead_days: int = 400
    rate_earliest_s: int = 1_577_836_800
    # Tests only: the crash hook's file (services/runtime/fault.py); empty turns it off.
    fault_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BillingConfig:
        return service_config(cls, "CALLERSYNC_", env)

    def fact_limits(self) -> FactLimits:
        return FactLimits(self.clock_skew_s, self.appointment_max_ahead_days, self.rate_earliest_s)
