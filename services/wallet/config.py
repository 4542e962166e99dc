"""The wallet's own knobs, read from CALLERSYNC_* variables (shared settings, the payment provider's secret key
and SMTP among them, stay in the runtime)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from services.runtime.config import service_config


@dataclasses.dataclass(frozen=True)
class WalletConfig:
    # The per-top-up maximum is an operator's opt-in (0: none): the policy says "prepay any amount".
    top_up_max_cents: int = 0
    # How long Redis remembers an idempotency key's answer (PostgreSQL's unique key is the backstop after).
    idempotency_retention_s: int = 24 * 3600
    # A reservation's life when Reserve does not say.
    reservation_default_ttl_s: int = 3600
    # Where payment emails send a contractor to finish a payment their bank wants authenticated.
    dashboard_url: str = "http://127.0.0.1:8080"
    # The sweeper asks the provider about top-ups still pending this long after their last change, so a lost
    # webhook never loses money; auto top-ups retry transient provider errors with backoff from this base.
    payment_sweep_interval_ms: int = 5000
    payment_sweep_after_ms: int = 30_000
    payment_retry_base_ms: int = 2000
    # The runaway breaker: at most this many auto top-ups per contractor per hour.
    auto_top_up_max_per_hour: int = 3
    # How long a wallet process owns an auto top-up's provider call before another may retry it (after a crash).
    auto_top_up_lease_ms: int = 60_000
    # The payment provider's publishable key, handed to the web page that collects a card (the secret key is
    # shared: reconcile and the demo ask the provider too).
    stripe_publishable_key: str = ""
    # Tests only: the crash hook's file (services/runtime/fault.py); empty turns it off.
    fault_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WalletConfig:
        return service_config(cls, "CALLERSYNC_", env)
