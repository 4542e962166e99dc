"""Configuration read once from CALLERSYNC_* environment variables: what every service uses (Settings), and
the loader of each service's own knobs (its config.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

SERVICE_PORTS = {"wallet": 50051, "billing": 50052, "routing": 50053}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def service_config(cls: type[T], prefix: str, env: Mapping[str, str] | None = None, *,
                   empty_text_is_a_value: bool = False) -> T:
    """A service's own knobs: a frozen dataclass whose every field has a default, read from <prefix><FIELD NAME>
    (CALLERSYNC_REFUND_WINDOW_DAYS for refund_window_days); an unset or empty variable keeps the default, except
    that with empty_text_is_a_value a text knob set empty is empty (where empty turns something off)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = prefix + field.name.upper()
        raw = env.get(name, "")
        if field.type == "str" and empty_text_is_a_value and name in env:
            values[field.name] = raw
            continue
        if not raw:
            continue
        if field.type == "bool":
            values[field.name] = raw in ("1", "true", "yes")
            continue
        if field.type == "str":
            values[field.name] = raw
            continue
        try:
            values[field.name] = float(raw) if field.type == "float" else int(raw)
        except ValueError:
            raise SystemExit(f"{name}={raw!r} is not {'a number' if field.type == 'float' else 'an integer'}") from None
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class Settings:
    # Empty means "start an embedded server" (callersync up) or "not configured" (serve).
    database_url: str = ""
    redis_url: str = ""
    host: str = "127.0.0.1"
    wallet_port: int = SERVICE_PORTS["wallet"]
    billing_port: int = SERVICE_PORTS["billing"]
    routing_port: int = SERVICE_PORTS["routing"]
    wallet_target: str = ""  # where billing and routing find the wallet; default host:wallet_port
    billing_target: str = ""  # where the gateway (and others) find billing; default host:billing_port
    routing_target: str = ""  # where the gateway (and others) find routing; default host:routing_port
    # The HTTP/JSON gateway's port (`up` starts it there); its other knobs are in services/gateway/config.py.
    gateway_port: int = 8080
    # TLS between services (PEM file paths). cert+key: serve and call over TLS. ca as well: mutual TLS, so a
    # server refuses clients without a certificate signed by that CA, and clients verify servers against it.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # Callers are named spiffe://<trust_domain>/<identity> in their certificates (docs/security.md).
    trust_domain: str = "callersync.local"
    # Listening beyond loopback without TLS is refused unless this says something else secures the traffic.
    insecure_listen: bool = False
    # Non-zero: also answer grpc.health.v1 alone, in plaintext, on this port (the kubelet's gRPC probes cannot
    # do mutual TLS). Health says only SERVING or not.
    health_port: int = 0
    # At start, how long to wait for PostgreSQL and Redis before giving up (0: fail at once, in one line).
    startup_wait_s: int = 0
    log_level: str = "INFO"
    log_format: str = "json"  # or "text" for humans at a terminal
    data_dir: str = ".callersync"
    shutdown_grace_s: int = 10
    db_pool_size: int = 8
    max_concurrent_rpcs: int = 2000
    # How often each service's outbox relay looks for events to publish when no write nudged it.
    outbox_poll_ms: int = 200
    # Where emails go out: the wallet's alerts and payment emails, the gateway's sign-in links (`up` starts a
    # local mail sink when this is empty).
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_sender: str = "alerts@callersync.local"
    # The payment provider of the stack (Stripe, or localstripe when `callersync up` runs without a key): the
    # wallet pays through it, `callersync reconcile` and the demo ask it, `up` starts localstripe without a key.
    # The publishable key is the wallet's (services/wallet/config.py), the webhook secret the gateway's.
    stripe_api_key: str = ""
    stripe_api_base: str = "https://api.stripe.com"

    def has_payment_provider(self) -> bool:
        """A Stripe key, or another API base (localstripe): without either, card payments are off."""
        return bool(self.stripe_api_key) or self.stripe_api_base != Settings.stripe_api_base

    def port_of(self, service: str) -> int:
        return {"wallet": self.wallet_port, "billing": self.billing_port, "routing": self.routing_port}[service]

    def target_of_wallet(self) -> str:
        return self.wallet_target or f"{self.host}:{self.wallet_port}"

    def target_of(self, service: str) -> str:
        """Where a gRPC client finds `service` (wallet, billing or routing)."""
        configured = {"wallet": self.wallet_target, "billing": self.billing_target, "routing": self.routing_target}
        return configured[service] or f"{self.host}:{self.port_of(service)}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        settings = service_config(cls, "CALLERSYNC_", env, empty_text_is_a_value=True)
        # Set empty, these two mean their default: there is no empty trust domain or API address.
        return dataclasses.replace(settings, trust_domain=settings.trust_domain or cls.trust_domain,
                                   stripe_api_base=settings.stripe_api_base or cls.stripe_api_base)
