"""Routing's own knobs, read from CALLERSYNC_ROUTING_* variables (shared settings stay in the runtime)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from services.runtime.config import service_config


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
    max_backups: int = 3
    ring_timeout_s: int = 20
    # A reservation outlives the ring and the conversation; billing captures or releases it when the call is
    # rated, and it lapses by itself if nobody does.
    reservation_ttl_s: int = 900
    # How long a cascade session stays answerable, and how long an unreleased "ringing or connected" slot
    # keeps a person busy when billing never reports the call.
    session_ttl_s: int = 3600
    live_slot_ttl_s: int = 900
    # More calls than this from one number within the window are refused without ringing anyone.
    burst_max_calls: int = 5
    burst_window_s: int = 60
    wallet_timeout_s: float = 2.0
    # The consumer of callersync.billing.events: idle time after which a dead consumer's entries are claimed.
    claim_idle_ms: int = 30_000
    # The step log (who was offered or skipped) reaches PostgreSQL in batches gathered over this long: a
    # missed-calls page can lag by this much, and the hot path shares its process with fewer, larger writes.
    step_linger_ms: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RoutingConfig:
        return service_config(cls, "CALLERSYNC_ROUTING_", env)
