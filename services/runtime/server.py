"""Server bootstrap shared by every service: health, reflection, interceptors, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.runtime import authz, background, descriptors
from services.runtime.interceptors import Admission, WrappingRegistrar

log = logging.getLogger("callersync.server")

MAX_REQUEST_BYTES = 4 * 1024 * 1024
Cleanup = Callable[[], Awaitable[None]]


class GrpcServer:
    """One service on one port. `cleanups` run after the last in-flight call finished, newest first."""

    def __init__(
        self,
        name: str,
        service_full_name: str,
        add_servicer: Callable[[grpc.aio.Server], None],
        *,
        host: str,
        port: int,
        max_concurrent_rpcs: int = 2000,
        cleanups: Sequence[Cleanup] = (),
        access: authz.AccessTable | None = None,
    ) -> None:
        self.name = name
        self.service_full_name = service_full_name
        self._address = f"{host}:{port}"
        self._cleanups = list(cleanups)
        self._stopped = asyncio.Event()
        self.health = health.aio.HealthServicer()
        # Past max_concurrent_rpcs the interceptor sheds load at once as RESOURCE_EXHAUSTED with a retry hint,
        # rather than queue into deadline expiries. grpc's own limit (which counts health checks too, so an
        # overloaded pod would fail its probes, and gives no hint) stays as a backstop well above it.
        self.admission = Admission(max_concurrent_rpcs)
        self.server = grpc.aio.server(
            maximum_concurrent_rpcs=max_concurrent_rpcs * 2 + 100,
            options=[
                ("grpc.so_reuseport", 0),
                # No request of ours comes near this (the largest, a RateCalls batch of 1000 calls, is ~1 MB);
                # a bigger one is refused as RESOURCE_EXHAUSTED before any handler allocates for it.
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                # Incoming metadata (headers) bounded like the trailers a client accepts.
                ("grpc.max_metadata_size", 16 * 1024),
            ],
        )
        # Who may call which method (services/<name>/access.py), checked once TLS gives callers an identity.
        self._gate = authz.Gate()
        self._access = access
        authorizer = None if access is None else authz.Authorizer(self._gate, access)
        add_servicer(WrappingRegistrar(self.server, name, self.admission, authorizer))  # type: ignore[arg-type]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # From the descriptors with the protos' comments: `grpcurl describe` shows what each call and field means.
        reflection.enable_server_reflection(
            (service_full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server,
            pool=descriptors.reflection_pool(),  # type: ignore[arg-type]  # duck-typed: the lookups reflection makes
        )
        self.port = 0
        self._credentials: grpc.ServerCredentials | None = None
        self._health_server: grpc.aio.Server | None = None
        self._health_address = ""

    def use_tls(self, credentials: grpc.ServerCredentials, *, trust_domain: str) -> None:
        """Serve over mutual TLS (credentials from tls.server_credentials with a CA), every call checked against
        the access table by the caller's spiffe://<trust_domain>/... certificate. Before start()."""
        if self._access is None:
            raise ValueError(f"{self.name}: TLS without an access table would let any certificate call anything")
        self._credentials = credentials
        self._gate.enforce(trust_domain)

    def serve_health_on(self, address: str) -> None:
        """Also answer grpc.health.v1 (and nothing else) in plaintext on `address`: the kubelet's native gRPC
        probes cannot present a client certificate. Before start()."""
        self._health_address = address
        self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)

    async def start(self) -> int:
        try:
            if self._credentials is not None:
                self.port = self.server.add_secure_port(self._address, self._credentials)
            else:
                self.port = self.server.add_insecure_port(self._address)
        except RuntimeError:  # grpc raises "Failed to bind" with a C-core trace: one line says more
            self.port = 0
        if self.port == 0:
            raise SystemExit(f"{self.name}: cannot listen on {self._address} (port in use?)")
        if self._health_server is not None:
            try:
                health_port = self._health_server.add_insecure_port(self._health_address)
            except RuntimeError:  # as above: one line, not grpc's trace
                health_port = 0
            if health_port == 0:
                raise SystemExit(f"{self.name}: cannot serve health on {self._health_address} (port in use?)")
            await self._health_server.start()
        await self.server.start()
        for svc in ("", self.service_full_name):
            await self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop taking calls, let in-flight ones finish within grace_s, then close pools and relays."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)
        for cleanup in reversed(self._cleanups):
            try:
                if not await background.within(cleanup(), max(grace_s, background.STOP_WAIT_S)):
                    log.warning("%s: %s did not finish in time; going on with the shutdown", self.name,
                                getattr(cleanup, "__qualname__", cleanup))
            except Exception:
                log.exception("%s: cleanup failed", self.name)


def stop_on_signals(servers: Sequence[GrpcServer], grace_s: float) -> asyncio.Event:
    """SIGTERM or SIGINT stops every server gracefully; the event is set once all are stopped."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def shutdown(signame: str) -> None:
        log.info("%s received: draining for up to %ss", signame, grace_s)
        await asyncio.gather(*(s.stop(grace_s) for s in servers))
        done.set()

    def on_signal(sig: signal.Signals) -> None:
        asyncio.ensure_future(shutdown(sig.name))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return done
