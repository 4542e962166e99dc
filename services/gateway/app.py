"""The HTTP/JSON gateway: aiohttp in front of grpc.aio clients, its routes read from the protos' descriptors.

Why aiohttp rather than the standard library: the gateway faces browsers, so it needs a complete HTTP/1.1
server (keep-alive, chunked bodies, body-size limits, graceful drain of in-flight requests) running in the
same event loop as the grpc.aio channels; asyncio's stdlib offers sockets, not an HTTP server, and
http.server is blocking. aiohttp is that server, mature and already asyncio-native.

Per request: CORS -> authenticate (401) -> route by descriptor (404/405) -> transcode (400) -> authorise
(403) -> call the service over gRPC -> status and body as grpc-gateway would answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import redis.asyncio as redis_asyncio
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import propagate, trace

from services.gateway import access, openapi, stripe_webhook, tokens, transcoding
from services.gateway.bindings import Binding, RouteTable, bindings_of, discover_services
from services.gateway.config import GatewayConfig
from services.gateway.media import http as media_http
from services.gateway.media.resolver import MediaConfig, MediaResolver
from services.gateway.slow_clients import GuardedSite
from services.gateway.web import routes as web_routes
from services.gateway.web.config import WebConfig
from services.gateway.web.sessions import WebSessions
from services.gateway.web.site import WebApp
from services.runtime import authz, telemetry
from services.runtime.channels import client_channel
from services.runtime.config import Settings
from services.runtime.errors import clip_message
from services.runtime.interceptors import REQUEST_ID

log = logging.getLogger("callersync.gateway")
refusals = logging.getLogger("callersync.gateway.refusals")

PUBLIC_PATHS = ("/healthz", "/readyz", "/openapi.json")
DEADLINE_S = 15.0
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-Request-Id"
CORS_MAX_AGE_S = 600
# (request, request id, [routed gRPC method]) -> the answer
ApiAnswer = Callable[[web.Request, str, list[str]], Awaitable[web.StreamResponse]]


def _json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    code: grpc.StatusCode,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = transcoding.error_body(code, clip_message(message), details or [])
    return _json(body, status or transcoding.http_status(code), headers)


class Gateway:
    """One HTTP listener; one gRPC channel per upstream service, reused by every request."""

    def __init__(
        self,
        settings: Settings,
        *,
        bindings: list[Binding] | None = None,
        targets: Mapping[str, str] | None = None,
        web_config: WebConfig | None = None,
        media_config: MediaConfig | None = None,
        config: GatewayConfig | None = None,
    ) -> None:
        self.settings = settings
        self.config = config = config or GatewayConfig.from_env()
        self.routes = RouteTable(bindings if bindings is not None else bindings_of(discover_services()))
        access.check_policy(self.routes.bindings)
        upstreams = sorted({b.upstream for b in self.routes.bindings})
        self.targets = {name: (targets or {}).get(name) or settings.target_of(name) for name in upstreams}
        self.keys = tokens.keys_of(config.jwt_secret)
        self.jwks = tokens.jwks_client(config.jwt_jwks_url)
        self.origins = {o.strip().rstrip("/") for o in config.cors_origins.split(",") if o.strip()}
        document = openapi.document(self.routes.bindings)
        document["paths"].update(media_http.openapi_paths())
        self.openapi_body = json.dumps(document, indent=1).encode()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, str], Any] = {}
        self._runner: web.AppRunner | None = None
        self._tracer = telemetry.tracer("gateway")
        self._latency = telemetry.rpc_latency_histogram("gateway")
        self.public_url = ""
        self._redis = redis_asyncio.Redis.from_url(settings.redis_url) if settings.redis_url else None
        self.media = MediaResolver(media_config or MediaConfig.from_env())
        web_config = web_config or WebConfig.from_env()
        self.web = WebApp(self, web_config, WebSessions(self._redis, link_ttl_s=web_config.link_ttl_s,
                                                        session_ttl_s=web_config.session_ttl_s)
                          if self._redis is not None else None)
        if any(len(k) < 32 for k in self.keys):
            # RFC 7518 3.2: an HS256 key shorter than the hash is guessable offline from any token it signed.
            log.warning("a CALLERSYNC_JWT_SECRET key is shorter than 32 bytes; use `openssl rand -base64 32`")
        if not self.keys and self.jwks is None:
            log.warning("neither CALLERSYNC_JWT_JWKS_URL nor CALLERSYNC_JWT_SECRET is set: every API request will "
                        "be refused (401)")

    # ------------------------------------------------------------------ lifecycle

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._cors_middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/openapi.json", self._openapi)
        web_routes.install(self.web, app)
        app.router.add_post(stripe_webhook.PATH, self._stripe_webhook)
        app.router.add_get("/v1/calls/{call_id}/" + media_http.PATH_KIND, self._call_media)
        app.router.add_get("/v1/contractors/{contractor_id}/calls/{call_id}/" + media_http.PATH_KIND,
                           self._call_media)
        app.router.add_route("*", "/{tail:.*}", self._api)
        return app

    async def start(self, port: int) -> int:
        for name, target in self.targets.items():
            # TLS / mutual TLS from the settings and trace context on every call, as every service's.
            self._channels[name] = client_channel(target, "gateway", self.settings)
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False,
                                     keepalive_timeout=float(self.config.gateway_keepalive_s))
        await self._runner.setup()
        site = GuardedSite(
            self._runner, self.settings.host, port, shutdown_timeout=float(self.settings.shutdown_grace_s),
            header_timeout_s=float(self.config.gateway_header_timeout_s),
        )
        await site.start()
        bound = int(self._runner.addresses[0][1])
        self.public_url = f"http://{self.settings.host}:{bound}"
        return bound

    def channel(self, upstream: str) -> grpc.aio.Channel:
        """The gateway's channel to one service (the web app's sign-in asks the wallet whose email it is)."""
        return self._channels[upstream]

    async def stop(self, grace_s: float | None = None) -> None:
        """Stops accepting, lets in-flight requests finish (within the shutdown grace), closes channels."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for channel in self._channels.values():
            await channel.close(grace_s)
        self._channels.clear()
        self._calls.clear()
        if self._redis is not None:
            await self._redis.aclose()

    # ------------------------------------------------------------------ CORS

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.origins or origin.rstrip("/") in self.origins

    @web.middleware
    async def _cors_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
            return self._preflight(request, origin)
        response = await handler(request)
        if origin and self._origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"
        response.headers.add("Vary", "Origin")
        return response

    def _preflight(self, request: web.Request, origin: str) -> web.Response:
        if not self._origin_allowed(origin):
            self._refuse(request, 403, f"CORS origin {origin} is not allowed")
            return error_response(grpc.StatusCode.PERMISSION_DENIED, f"origin {origin} is not allowed")
        path = request.rel_url.raw_path
        wanted = request.headers["Access-Control-Request-Method"].upper()
        gateways_own = path in PUBLIC_PATHS or media_http.MEDIA_PATH.fullmatch(path)
        methods = {"GET", "HEAD"} if gateways_own else self._methods_of(path)
        if not methods:
            return error_response(grpc.StatusCode.NOT_FOUND, f"no API call at {path}")
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(methods)),
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
            "Vary": "Origin",
        }
        return web.Response(status=204 if wanted in methods else 405, headers=headers)

    def _methods_of(self, raw_path: str) -> set[str]:
        match, allowed = self.routes.find("", raw_path)
        return allowed

    # ------------------------------------------------------------------ public endpoints

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "SERVING"})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready when every upstream's gRPC health service says SERVING."""

        async def check(name: str) -> tuple[str, str]:
            try:
                reply = await health_pb2_grpc.HealthStub(self._channels[name]).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
                return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as err:
                return name, err.code().name

        statuses = dict(await asyncio.gather(*(check(n) for n in self._channels)))
        ready = all(s == "SERVING" for s in statuses.values())
        return _json(
            {"status": "SERVING" if ready else "NOT_SERVING", "upstreams": statuses}, 200 if ready else 503
        )

    async def _stripe_webhook(self, request: web.Request) -> web.Response:
        """Authenticated by its Stripe-Signature, not a bearer token: see stripe_webhook."""
        return await stripe_webhook.handle(request, self.config.stripe_webhook_secret, self._channels.get("wallet"))

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi_body, content_type="application/json")

    async def _call_media(self, request: web.Request) -> web.StreamResponse:
        """A call's recording or transcript: whoever may ExplainCall this call (the same path with :explain, so
        the same scopes) gets a URL their browser can open."""
        return await self._as_api_call(request, self._media_of)

    async def _media_of(self, request: web.Request, request_id: str, routed: list[str]) -> web.StreamResponse:
        principal = await self._authenticate(request)
        if isinstance(principal, web.Response):
            return principal
        kind = request.match_info["kind"]
        explain_path = request.rel_url.raw_path.removesuffix(f"/{kind}") + ":explain"

        async def no_body() -> bytes:
            return b""

        reply = await self.dispatch(principal, "GET", explain_path, [], no_body, request_id=request_id,
                                    routed=routed)
        if reply.status != 200:
            return reply
        assert isinstance(reply.body, bytes)
        return media_http.respond(self.media, json.loads(reply.body), kind, request.match_info["call_id"],
                                  request_id)

    # ------------------------------------------------------------------ the API

    def _refuse(
        self, request: web.Request, status: int, reason: str, who: tokens.Principal | None = None
    ) -> None:
        """Logs a refusal with who and why; never the Authorization header or the token."""
        self._refuse_at(request.method, request.rel_url.raw_path, status, reason, who)

    def _refuse_at(
        self, http_method: str, raw_path: str, status: int, reason: str, who: tokens.Principal | None = None
    ) -> None:
        refusals.warning(
            "refused %s %s status=%d reason=%r sub=%s role=%s contractor_id=%s",
            http_method,
            raw_path,
            status,
            reason,
            who.subject if who else "-",
            who.role if who else "-",
            (who.contractor_id or "-") if who else "-",
        )

    def _verify(self, token: str) -> dict[str, Any]:
        return tokens.verify(token, self.keys, issuer=self.config.jwt_issuer, audience=self.config.jwt_audience,
                             max_lifetime_s=self.config.jwt_max_lifetime_s, jwks=self.jwks)

    async def _authenticate(self, request: web.Request) -> tokens.Principal | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="callersync"'}
        if scheme.lower() != "bearer" or not token.strip():
            reason = "no bearer token" if not header else "Authorization is not a bearer token"
            self._refuse(request, 401, reason)
            return error_response(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{reason}: send Authorization: Bearer <JWT>",
                headers=challenge,
            )
        token = token.strip()
        try:
            if self.jwks is not None and tokens.algorithm_of(token) in tokens.ASYMMETRIC:
                # PyJWKClient fetches the key set with blocking I/O when its cache is cold or a kid is new.
                claims = await asyncio.to_thread(self._verify, token)
            else:
                claims = self._verify(token)
            principal = tokens.principal_of(claims)
        except tokens.KeysUnavailable as err:
            log.warning("cannot verify a token: %s", err)
            return error_response(grpc.StatusCode.UNAVAILABLE, "the identity provider's keys cannot be fetched; "
                                  "retry shortly")
        except tokens.InvalidToken as err:
            self._refuse(request, 401, str(err))
            return error_response(
                grpc.StatusCode.UNAUTHENTICATED,
                str(err),
                headers={"WWW-Authenticate": 'Bearer realm="callersync", error="invalid_token"'},
            )
        except tokens.OutOfScope as err:
            self._refuse(request, 403, str(err))
            return error_response(grpc.StatusCode.PERMISSION_DENIED, str(err))
        return principal

    def _callable(self, binding: Binding) -> Any:
        key = (binding.upstream, binding.rpc_path)
        call = self._calls.get(key)
        if call is None:
            call = self._channels[binding.upstream].unary_unary(
                binding.rpc_path,
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=binding.response_class.FromString,
            )
            self._calls[key] = call
        return call

    async def _api(self, request: web.Request) -> web.StreamResponse:
        return await self._as_api_call(request, self._transcode_and_call)

    async def _as_api_call(self, request: web.Request, answer: ApiAnswer) -> web.StreamResponse:
        """What every API answer gets: a request id (the client's or a new one), a trace span, the latency
        histogram, and no caching unless the answer says otherwise."""
        # A client's own id is kept when it looks like one (it is echoed in a header and sent to the services).
        request_id = request.headers.get("X-Request-Id", "")
        if not REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        started = time.perf_counter()
        # One SERVER span per HTTP request, joining the caller's trace when it sent a traceparent.
        with self._tracer.start_as_current_span(
            f"HTTP {request.method}", context=propagate.extract(request.headers), kind=telemetry.SERVER_KIND
        ) as span:
            routed = ["unrouted"]  # the gRPC method, once known, for the latency histogram
            response = await answer(request, request_id, routed)
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
        self._latency.record(
            (time.perf_counter() - started) * 1000.0,
            {"rpc.method": routed[0], "http.status": response.status},
        )
        response.headers["X-Request-Id"] = request_id
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _transcode_and_call(
        self, request: web.Request, request_id: str, routed: list[str]
    ) -> web.Response:
        principal = await self._authenticate(request)
        if isinstance(principal, web.Response):
            return principal

        async def read_body() -> bytes:
            return await request.read()

        return await self.dispatch(
            principal, request.method, request.rel_url.raw_path, request.rel_url.query.items(), read_body,
            request_id=request_id, grpc_timeout=request.headers.get("Grpc-Timeout"), routed=routed,
        )

    async def dispatch(
        self,
        principal: tokens.Principal,
        http_method: str,
        raw_path: str,
        query: Any,
        read_body: Any,
        *,
        request_id: str,
        grpc_timeout: str | None = None,
        routed: list[str] | None = None,
    ) -> web.Response:
        """One API call for an authenticated principal: route, transcode, authorise, call. The web app's pages
        call the API through here, with their session's principal, so they reach exactly what any frontend's
        token of the same role reaches."""
        routed = routed if routed is not None else ["unrouted"]
        match, allowed = self.routes.find(http_method, raw_path)
        if match is None:
            if allowed:
                return error_response(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{http_method} is not supported on {raw_path}",
                    status=405,
                    headers={"Allow": ", ".join(sorted(allowed))},
                )
            return error_response(grpc.StatusCode.NOT_FOUND, f"no API call at {raw_path}")
        binding = match.binding
        routed[0] = binding.rpc_path
        trace.get_current_span().update_name(f"{http_method} {binding.template.source}")
        try:
            body = await read_body()
        except web.HTTPRequestEntityTooLarge as err:
            return error_response(
                grpc.StatusCode.RESOURCE_EXHAUSTED, err.text or "request body too large", status=413
            )
        try:
            message = transcoding.build_request(binding, match.path_values, query, body)
        except transcoding.TranscodeError as err:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, err.message)
        try:
            access.authorize(principal, binding, message)
        except access.Forbidden as err:
            self._refuse_at(http_method, raw_path, 403, str(err), principal)
            return error_response(grpc.StatusCode.PERMISSION_DENIED, str(err))
        try:
            deadline_s = deadline_of(grpc_timeout)
        except ValueError as err:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        metadata = (
            ("x-request-id", request_id),
            (authz.FORWARDED_SUBJECT, principal.subject),
            (authz.FORWARDED_ROLE, principal.role),
        )
        try:
            reply = await self._callable(binding)(message, timeout=deadline_s, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            level = logging.WARNING if transcoding.http_status(code) >= 500 else logging.DEBUG
            log.log(
                level, "%s -> %s %s request_id=%s", binding.rpc_path, code.name, err.details(), request_id
            )
            return error_response(
                code, err.details() or code.name, details=transcoding.details_of(err.trailing_metadata())
            )
        access.anonymise(principal, binding, reply)
        return _json(transcoding.response_json(binding, reply))


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def deadline_of(header: str | None) -> float:
    """The upstream deadline: the client's `Grpc-Timeout` header (gRPC's own format, as grpc-gateway and Envoy's
    transcoder read it: 1-8 digits and a unit H, M, S, m, u or n), never longer than the gateway's own."""
    if header is None:
        return DEADLINE_S
    value, unit = header.strip()[:-1], header.strip()[-1:]
    if not (value.isascii() and value.isdigit() and 1 <= len(value) <= 8 and unit in _TIMEOUT_UNITS):
        raise ValueError(f"Grpc-Timeout {header!r} is not 1-8 digits and a unit (H, M, S, m, u, n), e.g. 2S or 500m")
    return min(int(value) * _TIMEOUT_UNITS[unit], DEADLINE_S)


def wait_healthy(host: str, port: int, deadline_s: float) -> bool:
    """For `callersync up`: polls /healthz until it answers 200."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


async def serve(port: int | None = None) -> None:
    """`callersync serve gateway`: runs until SIGTERM or SIGINT, then drains."""
    settings = Settings.from_env()
    telemetry.configure("gateway")
    gateway = Gateway(settings)
    wanted = settings.gateway_port if port is None else port
    try:
        bound = await gateway.start(wanted)
    except OSError as err:
        await gateway.stop(0)
        raise SystemExit(f"gateway: cannot listen on {settings.host}:{wanted} ({err.strerror or err})") from None
    from services.runtime.processes import process_title, set_title

    set_title(process_title("gateway", bound))
    print(f"gateway listening on {settings.host}:{bound}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("draining for up to %ss", settings.shutdown_grace_s)
    await gateway.stop(settings.shutdown_grace_s)
    telemetry.shutdown()
