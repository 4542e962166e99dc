"""Bearer tokens: JWTs verified with PyJWT, and minted (HS256) for operators, development and tests.

Two kinds of key, each pinned to its own algorithms (never the token's say-so, which closes `alg: none` and
RS256/HS256 confusion):
- an identity provider's published keys (CALLERSYNC_JWT_JWKS_URL, a JWKS document): RS256/RS384/RS512,
  PS256, ES256/ES384, the key picked by the token's `kid`; fetched with PyJWKClient, cached for 5 minutes, an
  unknown `kid` refetching at most every 30 s (a rotated key is found; a flood of made-up kids is not a flood
  of fetches);
- HS256 shared secrets (CALLERSYNC_JWT_SECRET, comma-separated: the first signs, every one verifies, so keys
  rotate without downtime), kept for development and `callersync up`.

Claims: `sub` (who), `role` ("contractor" or "operator"), `contractor_id` (required for contractors),
`exp` and `iat` (required, finite numbers; `exp - iat` at most CALLERSYNC_JWT_MAX_LIFETIME_S, 24 h by
default, so a leaked token is not good for years), `iss` and `aud` (required to match the configured issuer
and audience, unless those are configured empty), optionally `nbf`.

    python -m services.gateway.tokens --role operator --sub alice
    python -m services.gateway.tokens --role contractor --sub bob --contractor-id ctr-42 --ttl-s 3600

mints a token with the first key of CALLERSYNC_JWT_SECRET, or the dev key `callersync up` keeps in its
data dir.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from services.gateway.config import GatewayConfig

ROLES = ("contractor", "operator")
ISSUER, AUDIENCE = GatewayConfig.jwt_issuer, GatewayConfig.jwt_audience  # the configuration's defaults
LEEWAY_S = 30
DEV_SECRET_FILE = "jwt_secret"


class InvalidToken(Exception):
    """Missing, malformed, badly signed or expired: 401."""


class OutOfScope(Exception):
    """A genuine token that grants nothing here (unknown role, contractor without contractor_id): 403."""


@dataclasses.dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    contractor_id: str = ""

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def keys_of(configured: str) -> list[bytes]:
    """CALLERSYNC_JWT_SECRET as keys: comma-separated, the first signs, every one verifies (rotation)."""
    return [k.strip().encode() for k in configured.split(",") if k.strip()]


ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
DEFAULT_MAX_LIFETIME_S = 24 * 3600


class KeysUnavailable(Exception):
    """The identity provider's published keys cannot be fetched: 503, the token may well be fine."""


def algorithm_of(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as err:
        raise InvalidToken("token is not a JWS compact serialisation with a JSON header") from err
    alg = header.get("alg")
    return alg if isinstance(alg, str) else ""


def _time_claim(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    # bool is an int to Python; NaN and Infinity parse from JSON and compare false with everything, so a
    # token with `exp: NaN` would never expire.
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidToken(f"token has no numeric {name}" if required else f"token {name} is not a number")
    return float(value)


def verify(token: str, keys: Sequence[bytes], now: float | None = None, *, issuer: str = "",
           audience: str = "", max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S,
           jwks: jwt.PyJWKClient | None = None) -> dict[str, Any]:
    """The claims of a valid token; raises InvalidToken otherwise (KeysUnavailable when the JWKS cannot be
    fetched). An empty issuer or audience is not checked. With `jwks`, fetching keys may block: call it off
    the event loop for asymmetric tokens."""
    alg = algorithm_of(token)
    candidates: list[Any]
    if alg == "HS256":
        if not keys:
            raise InvalidToken("the gateway has no CALLERSYNC_JWT_SECRET configured; no HS256 token can be valid")
        candidates = list(keys)
    elif alg in ASYMMETRIC:
        if jwks is None:
            raise InvalidToken(f"token algorithm {alg} needs the issuer's keys: CALLERSYNC_JWT_JWKS_URL is not set")
        try:
            candidates = [jwks.get_signing_key_from_jwt(token).key]
        except jwt.PyJWKClientConnectionError as err:
            raise KeysUnavailable(f"the identity provider's keys cannot be fetched ({err})") from err
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as err:
            raise InvalidToken(f"no published key matches the token ({err})") from err
    else:
        raise InvalidToken(f"token algorithm must be HS256 or one of {', '.join(ASYMMETRIC)}")
    options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False,  # checked below, against `now`
               "verify_aud": False, "verify_iss": False, "require": []}  # checked below, with clearer messages
    claims: Any = None
    for key in candidates:
        try:
            claims = jwt.decode(token, key, algorithms=[alg], options=options)  # type: ignore[arg-type]
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as err:
            raise InvalidToken(f"token is malformed ({err})") from err
    if claims is None:
        raise InvalidToken("token signature does not verify")
    if not isinstance(claims, dict):
        raise InvalidToken("token claims are not an object")
    now = time.time() if now is None else now
    exp = _time_claim(claims, "exp", True)
    iat = _time_claim(claims, "iat", True)
    nbf = _time_claim(claims, "nbf", False)
    assert exp is not None and iat is not None
    if now > exp + LEEWAY_S:
        raise InvalidToken("token expired")
    if nbf is not None and now + LEEWAY_S < nbf:
        raise InvalidToken("token not valid yet")
    if iat > now + LEEWAY_S:
        raise InvalidToken("token issued in the future (iat)")
    if exp - iat > max_lifetime_s:
        raise InvalidToken(f"token lifetime (exp - iat) exceeds {max_lifetime_s} s; ask for a shorter-lived token")
    if issuer and claims.get("iss") != issuer:
        raise InvalidToken(f"token issuer must be {issuer!r}")
    aud = claims.get("aud")
    if audience and audience not in (aud if isinstance(aud, list) else [aud]):
        raise InvalidToken(f"token audience must include {audience!r}")
    return claims


def jwks_client(url: str, cooldown_s: float = 30) -> jwt.PyJWKClient | None:
    """The identity provider's key set, cached 5 minutes; an unknown kid refetches at most every cooldown_s."""
    if not url:
        return None
    return jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=300, timeout=5, cooldown_duration=cooldown_s)


def principal_of(claims: Mapping[str, Any]) -> Principal:
    subject, role, contractor_id = claims.get("sub"), claims.get("role"), claims.get("contractor_id", "")
    if not isinstance(subject, str) or not subject:
        raise OutOfScope("token has no sub")
    if role not in ROLES:
        raise OutOfScope(f"role {role!r} grants nothing; roles are {', '.join(ROLES)}")
    if role == "contractor" and (not isinstance(contractor_id, str) or not contractor_id):
        raise OutOfScope("a contractor token must carry contractor_id")
    return Principal(subject, role, contractor_id if isinstance(contractor_id, str) else "")


def mint(claims: Mapping[str, Any], key: Any, algorithm: str = "HS256", kid: str = "") -> str:
    return jwt.encode(dict(claims), key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def mint_for(key: Any, *, sub: str, role: str, contractor_id: str = "", ttl_s: int = 3600,
             issuer: str = ISSUER, audience: str = AUDIENCE, algorithm: str = "HS256", kid: str = "") -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl_s}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if contractor_id:
        claims["contractor_id"] = contractor_id
    return mint(claims, key, algorithm, kid)


def dev_secret(data_dir: pathlib.Path) -> str:
    """The key `callersync up` uses when none is configured: random, kept (mode 0600) in the data dir."""
    path = data_dir / DEV_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def main(argv: list[str] | None = None) -> None:
    """Kept for old scripts: `callersync token` is the command (it finds the running stack's key). This process
    becomes that command, rather than importing it: the gateway sits below the command line."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    os.execv(sys.executable, [sys.executable, "-m", "services.cli", "token", *args])


if __name__ == "__main__":
    main()
