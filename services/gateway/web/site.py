"""The web app's routes and the checks every page passes: a session, its role, CSRF on every POST."""

from __future__ import annotations

import collections
import dataclasses
import hmac
import logging
import pathlib
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.gateway.web import render
from services.gateway.web.api import Api, ApiCall, ApiError, GatewayPort
from services.gateway.web.config import WebConfig
from services.gateway.web.sessions import Session, WebSessions

log = logging.getLogger("callersync.gateway.web")
STATIC = pathlib.Path(__file__).parent / "static"
SESSION_COOKIE = "cs_session"
SIGNIN_CSRF_COOKIE = "cs_signin_csrf"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclasses.dataclass
class Ctx:
    request: web.Request
    session: Session
    api: Api

    @property
    def principal(self) -> Any:
        return self.session.principal

    def page(self, title: str, body: str, *, status: int = 200, current: str = "") -> web.Response:
        return render.page(title, body, principal=self.principal, csrf=self.session.csrf, status=status,
                           current=current)


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


class WebApp:
    def __init__(self, gateway: GatewayPort, config: WebConfig, sessions: WebSessions | None) -> None:
        self.gateway = gateway
        self.config = config
        self.sessions = sessions
        # Page name -> the API calls its renders made: what scopes each page needs (tests read it).
        self.api_calls: dict[str, list[ApiCall]] = collections.defaultdict(list)

    # ------------------------------------------------------------------ cookies and checks

    @staticmethod
    def secure(request: web.Request) -> bool:
        """Secure cookies everywhere but plain-HTTP loopback, where a browser would not send them back."""
        return request.url.host not in LOOPBACK

    def set_cookie(self, response: web.StreamResponse, request: web.Request, name: str, value: str,
                   max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/app", httponly=True, samesite="Strict",
                            secure=self.secure(request))

    @staticmethod
    def same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if not origin or origin == "null":
            return origin is None
        parsed = urllib.parse.urlsplit(origin)
        return parsed.netloc == request.host

    async def session_of(self, request: web.Request) -> Session | None:
        if self.sessions is None:
            return None
        return await self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))

    @staticmethod
    def csrf_matches(expected: str, given: Any) -> bool:
        return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected, given)

    def public_url(self) -> str:
        return self.config.public_url or self.gateway.public_url

    def signin_csrf(self, request: web.Request) -> str:
        return request.cookies.get(SIGNIN_CSRF_COOKIE) or secrets.token_urlsafe(24)

    # ------------------------------------------------------------------ guarded pages

    def guarded(self, name: str, handler: Handler, *, operator: bool = False) -> Callable[..., Any]:
        async def run(request: web.Request) -> web.StreamResponse:
            if self.sessions is None:
                return render.page("Sign-in is not available",
                                   "<p>The web app needs Redis for sessions: set CALLERSYNC_REDIS_URL.</p>",
                                   status=503)
            session = await self.session_of(request)
            if session is None:
                target = urllib.parse.quote(request.rel_url.path_qs, safe="")
                raise web.HTTPSeeOther(f"/app/signin?next={target}")
            if request.method == "POST":
                form = await request.post()
                if not self.same_origin(request) or not self.csrf_matches(session.csrf, form.get("csrf")):
                    return render.page("Refused", "<p>This form expired or came from another site. Go back, "
                                       "reload the page and try again.</p>", principal=session.principal,
                                       csrf=session.csrf, status=403)
            if operator and not session.principal.is_operator:
                return render.page("Not for your account", "<p>This page is for CallerSync operators.</p>",
                                   principal=session.principal, csrf=session.csrf, status=403)
            api = Api(self.gateway, session.principal, self.api_calls[name])
            ctx = Ctx(request, session, api)
            try:
                return await handler(ctx)
            except ApiError as err:
                return self.api_error_page(ctx, err)

        return run

    def api_error_page(self, ctx: Ctx, err: ApiError) -> web.Response:
        if err.status == 403:
            return ctx.page("Not your account",
                            "<p>Your session cannot open this page: it belongs to another account.</p>"
                            f'<p class="detail">{render.esc(err.message)}</p>', status=403)
        if err.status == 404:
            return ctx.page("Not found", f"<p>{render.esc(err.message)}</p>", status=404)
        if err.status == 400:
            return ctx.page("Please check and try again", f'<p role="alert">{render.esc(err.message)}</p>',
                            status=400)
        return ctx.page("Something went wrong",
                        f"<p>The service answered {err.status}: {render.esc(err.message)}. Try again shortly.</p>",
                        status=502 if err.status >= 500 else err.status)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        types = {".css": "text/css", ".js": "text/javascript"}
        return web.Response(body=path.read_bytes(), content_type=types.get(path.suffix, "application/octet-stream"),
                            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})
