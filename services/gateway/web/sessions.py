"""One-time sign-in links and browser sessions, in Redis with TTLs.

Only a SHA-256 of each secret is stored, so a copy of Redis opens no session. A link is consumed with GETDEL:
of two clicks racing, one wins. A session maps to the same Principal a JWT would, kept apart from tokens.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from typing import Any

from services.gateway.tokens import Principal

PREFIX = "callersync:web:"


def _key(kind: str, secret: str) -> str:
    return f"{PREFIX}{kind}:{hashlib.sha256(secret.encode()).hexdigest()}"


def _dump(principal: Principal, **extra: str) -> str:
    return json.dumps({"sub": principal.subject, "role": principal.role,
                       "contractor_id": principal.contractor_id, **extra})


def _load(raw: Any) -> tuple[Principal, dict[str, Any]] | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return Principal(data["sub"], data["role"], data.get("contractor_id", "")), data


@dataclasses.dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str


class WebSessions:
    def __init__(self, redis: Any, *, link_ttl_s: int, session_ttl_s: int) -> None:
        self._redis = redis
        self.link_ttl_s = link_ttl_s
        self.session_ttl_s = session_ttl_s

    async def issue_link(self, principal: Principal) -> str:
        token = secrets.token_urlsafe(32)
        await self._redis.set(_key("link", token), _dump(principal), ex=self.link_ttl_s)
        return token

    async def peek_link(self, token: str) -> Principal | None:
        loaded = _load(await self._redis.get(_key("link", token)))
        return loaded[0] if loaded else None

    async def consume_link(self, token: str) -> Principal | None:
        """The link's principal, once: the key is gone after this call, whoever else asks at the same time."""
        loaded = _load(await self._redis.getdel(_key("link", token)))
        return loaded[0] if loaded else None

    async def open(self, principal: Principal) -> tuple[str, Session]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self._redis.set(_key("session", token), _dump(principal, csrf=csrf), ex=self.session_ttl_s)
        return token, Session(principal, csrf)

    async def get(self, token: str) -> Session | None:
        if not token:
            return None
        loaded = _load(await self._redis.get(_key("session", token)))
        if loaded is None:
            return None
        return Session(loaded[0], loaded[1]["csrf"])

    async def close(self, token: str) -> None:
        """Sign-out: the session is gone server-side, so a copied cookie opens nothing afterwards."""
        await self._redis.delete(_key("session", token))
