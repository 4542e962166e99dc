"""The gateway's own knobs, read from CALLERSYNC_* variables: bearer tokens, CORS, slow clients, Stripe's webhook
(what every process shares stays in services/runtime/config.py; the web app's are in web/config.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from services.runtime.config import int_from_env


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
        # Read as Settings read them: a variable set empty is empty (an empty issuer turns its check off).
        env = os.environ if env is None else env
        d = cls()
        return cls(
            jwt_secret=env.get("CALLERSYNC_JWT_SECRET", d.jwt_secret),
            jwt_issuer=env.get("CALLERSYNC_JWT_ISSUER", d.jwt_issuer),
            jwt_audience=env.get("CALLERSYNC_JWT_AUDIENCE", d.jwt_audience),
            jwt_jwks_url=env.get("CALLERSYNC_JWT_JWKS_URL", d.jwt_jwks_url),
            jwt_max_lifetime_s=int_from_env(env, "CALLERSYNC_JWT_MAX_LIFETIME_S", d.jwt_max_lifetime_s),
            cors_origins=env.get("CALLERSYNC_CORS_ORIGINS", d.cors_origins),
            gateway_header_timeout_s=int_from_env(env, "CALLERSYNC_GATEWAY_HEADER_TIMEOUT_S",
                                                  d.gateway_header_timeout_s),
            gateway_keepalive_s=int_from_env(env, "CALLERSYNC_GATEWAY_KEEPALIVE_S", d.gateway_keepalive_s),
            stripe_webhook_secret=env.get("CALLERSYNC_STRIPE_WEBHOOK_SECRET", d.stripe_webhook_secret),
        )
