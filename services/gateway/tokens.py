"""Bearer tokens: HS256 JWTs checked with the standard library (hmac), and minted for operators and tests.

Why not PyJWT: one algorithm, fixed by configuration, is a few dozen lines, and pinning the algorithm here
(never trusting the token's own `alg`) closes the classic `alg: none` / algorithm-confusion holes.

Claims: `sub` (who), `role` ("contractor" or "operator"), `contractor_id` (required for contractors),
`exp` (required), `iss` and `aud` (required to match the configured issuer and audience, unless those are
configured empty), optionally `nbf` and `iat`.

    python -m services.gateway.tokens --role operator --sub alice
    python -m services.gateway.tokens --role contractor --sub bob --contractor-id ctr-42 --ttl-s 3600

mints a token with the first key of CALLERSYNC_JWT_SECRET, or the dev key `callersync up` keeps in its
data dir.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import pathlib
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from services.runtime.config import Settings

ROLES = ("contractor", "operator")
ISSUER, AUDIENCE = Settings.jwt_issuer, Settings.jwt_audience  # the configuration's defaults
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


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, TypeError) as err:
        raise InvalidToken("token is not base64url") from err


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verify(token: str, keys: Sequence[bytes], now: float | None = None, *, issuer: str = "",
           audience: str = "") -> dict[str, Any]:
    """The claims of a valid token; raises InvalidToken otherwise. An empty issuer or audience is not checked."""
    if not keys:
        raise InvalidToken("the gateway has no CALLERSYNC_JWT_SECRET configured; no token can be valid")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("token is not a JWS compact serialisation")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidToken("token header or claims are not JSON") from err
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidToken("token algorithm must be HS256")
    signature = _b64decode(parts[2])
    signed = f"{parts[0]}.{parts[1]}".encode()
    if not any(hmac.compare_digest(hmac.new(k, signed, hashlib.sha256).digest(), signature) for k in keys):
        raise InvalidToken("token signature does not verify")
    if not isinstance(claims, dict):
        raise InvalidToken("token claims are not an object")
    now = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise InvalidToken("token has no numeric exp")
    if now > exp + LEEWAY_S:
        raise InvalidToken("token expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and now + LEEWAY_S < nbf:
        raise InvalidToken("token not valid yet")
    if issuer and claims.get("iss") != issuer:
        raise InvalidToken(f"token issuer must be {issuer!r}")
    aud = claims.get("aud")
    if audience and audience not in (aud if isinstance(aud, list) else [aud]):
        raise InvalidToken(f"token audience must include {audience!r}")
    return claims


def principal_of(claims: Mapping[str, Any]) -> Principal:
    subject, role, contractor_id = claims.get("sub"), claims.get("role"), claims.get("contractor_id", "")
    if not isinstance(subject, str) or not subject:
        raise OutOfScope("token has no sub")
    if role not in ROLES:
        raise OutOfScope(f"role {role!r} grants nothing; roles are {', '.join(ROLES)}")
    if role == "contractor" and (not isinstance(contractor_id, str) or not contractor_id):
        raise OutOfScope("a contractor token must carry contractor_id")
    return Principal(subject, role, contractor_id if isinstance(contractor_id, str) else "")


def mint(claims: Mapping[str, Any], key: bytes) -> str:
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64encode(signature)}"


def mint_for(key: bytes, *, sub: str, role: str, contractor_id: str = "", ttl_s: int = 3600,
             issuer: str = ISSUER, audience: str = AUDIENCE) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl_s}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if contractor_id:
        claims["contractor_id"] = contractor_id
    return mint(claims, key)


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
    """Kept for old scripts: `callersync token` is the command (it finds the running stack's key)."""
    import sys

    from services.cli import main as cli

    cli(["token", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
