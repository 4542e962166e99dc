"""The gateway's own knobs, read from CALLERSYNC_* variables: bearer tokens, CORS, slow clients, Stripe's webhook
(what every process shares stays in services/runtime/config.py; the web app's are in web/config.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from services.runtime.config import service_config


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    # The HS256 key(s) of bearer tokens (comma-separated: the first signs, all verify, so keys rotate without
    # downtime).
    jwt_secret: str = ""
    # A token must name this issuer (`iss`) and this audience (`aud`): a token minted with the same key for
    # another service or by another issuer is refused. Empty turns that check off.
    jwt_issuer: str = "callersync"
    jwt_audience: str = "callersync-gateway"
    # Bearer tokens from an identity provider: its published keys (JWKS, RS256/ES256), and the longest
    # lifetime (exp - iat) a token may claim. The HS256 keys above remain for development.
    jwt_jwks_url: str = ""
    jwt_max_lifetime_s: int = 24 * 3600
    # The web origins allowed by CORS (comma-separated, or *).
    cors_origins: str = ""
    # A client must finish its first request's headers within this many seconds (slow clients hold sockets);
    # an idle or half-sent kept-alive connection is closed this long after its last response.
    gateway_header_timeout_s: int = 10
    gateway_keepalive_s: int = 75
    # Verifies Stripe-Signature on the payment provider's webhooks.
    stripe_webhook_secret: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        # An issuer or audience set empty turns its check off, so an empty variable is a value here.
        return service_config(cls, "CALLERSYNC_", env, empty_text_is_a_value=True)
