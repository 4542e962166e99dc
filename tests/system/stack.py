"""The three services as real processes on a database and Redis of their own, for tests that treat the system
as a black box (fuzzing, faults)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime import authz, certs
from tests.conftest import free_port
from tests.system.processes import Process, callersync_env

SCHEMAS = ("wallet", "billing", "routing")
OPERATOR = "operator/tests"
IDENTITIES = (*SCHEMAS, "gateway", "routing-engine", OPERATOR)


def use_mtls(default: bool) -> bool:
    """Whether a stack of the system and fault tests runs under mutual TLS, each process with its own
    certificate: the stack's own default (the fault and fuzz tests: yes, as in production; the demo's: no, so
    the plaintext path stays tested), unless CALLERSYNC_TEST_MTLS says 1 (every stack) or 0 (none, e.g. to
    grpcurl -plaintext into a fault test's stack). tests/system/test_mtls_stack.py is under mutual TLS always."""
    return {"1": True, "0": False}.get(os.environ.get("CALLERSYNC_TEST_MTLS", ""), default)


def identity_for(role: str) -> str:
    """The stack's identity holding `role` (services/runtime/authz.py's roles; operators are people)."""
    return OPERATOR if role == authz.OPERATOR else role


def tls_env(pki: certs.DevPki, identity: str) -> dict[str, str]:
    return {
        "CALLERSYNC_TLS_CERT_FILE": str(pki[identity].cert_file),
        "CALLERSYNC_TLS_KEY_FILE": str(pki[identity].key_file),
        "CALLERSYNC_TLS_CA_FILE": str(pki.ca_file),
    }


@dataclasses.dataclass
class Stack:
    database_url: str
    env: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, Process]
    # Under mutual TLS: the development CA and a certificate per identity. `env` then names the operator's (what
    # a client of the stack, e.g. `callersync demo`, presents); each service is started with its own.
    pki: certs.DevPki | None = None

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def credentials(self, identity: str) -> grpc.ChannelCredentials:
        assert self.pki is not None
        issued = self.pki[identity]
        return grpc.ssl_channel_credentials(self.pki.ca_file.read_bytes(), issued.key_file.read_bytes(),
                                            issued.cert_file.read_bytes())

    def channel(self, service: str, identity: str = OPERATOR, options: Sequence[tuple[str, Any]] = ()
                ) -> grpc.aio.Channel:
        """A grpc.aio channel to `service`, presenting `identity`'s certificate under mutual TLS (plaintext
        otherwise, when every caller is trusted)."""
        if self.pki is None:
            return grpc.aio.insecure_channel(self.target(service), options=options)
        return grpc.aio.secure_channel(self.target(service), self.credentials(identity), options=options)

    def sync_channel(self, service: str, identity: str = OPERATOR, options: Sequence[tuple[str, Any]] = ()
                     ) -> grpc.Channel:
        if self.pki is None:
            return grpc.insecure_channel(self.target(service), options=options)
        return grpc.secure_channel(self.target(service), self.credentials(identity), options=options)

    def start(self, service: str) -> None:
        env = self.env | (tls_env(self.pki, service) if self.pki else {})
        self.processes[service] = Process("serve", service, env=env)
        self.processes[service].wait_for(f"{service} listening", timeout=60)
        with self.sync_channel(service) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        if self.pki is not None:
            shutil.rmtree(self.pki.ca_file.parent, ignore_errors=True)


def start_stack(database_url: str, redis_url: str, *, mtls: bool, **extra_env: str) -> Stack:
    """The three services as processes; under mutual TLS when `mtls` (see use_mtls)."""
    ports = {name: free_port() for name in SCHEMAS}
    pki = None
    if mtls:
        pki = certs.write_dev_pki(tempfile.mkdtemp(prefix="callersync-pki-"), IDENTITIES)
        engine = pki["routing-engine"]
        extra_env = {
            **tls_env(pki, OPERATOR),
            "CALLERSYNC_DEMO_ENGINE_CERT_FILE": str(engine.cert_file),
            "CALLERSYNC_DEMO_ENGINE_KEY_FILE": str(engine.key_file),
            **extra_env,
        }
    env = callersync_env(
        CALLERSYNC_DATABASE_URL=database_url,
        CALLERSYNC_REDIS_URL=redis_url,
        CALLERSYNC_OUTBOX_POLL_MS="50",
        CALLERSYNC_LOG_LEVEL="WARNING",
        **{f"CALLERSYNC_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        **{f"CALLERSYNC_{n.upper()}_TARGET": f"127.0.0.1:{p}" for n, p in ports.items()},
        **extra_env,
    )
    stack = Stack(database_url, env, ports, {}, pki)
    try:
        for name in SCHEMAS:
            stack.start(name)
    except BaseException:
        stack.stop()
        raise
    return stack


class Fingerprinter:
    """A digest of every row the services own: equal before and after means nothing was written. Holds one
    connection on a private event loop, so synchronous tests (hypothesis) can call it cheaply."""

    def __init__(self, database_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(asyncpg.connect(database_url))
        tables = self._loop.run_until_complete(self._conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1::text[]) ORDER BY 1, 2",
            list(SCHEMAS),
        ))
        self._sql = "SELECT " + ", ".join(
            # published_at is the outbox relay's own bookkeeping, written in the background after commits.
            f"(SELECT md5(coalesce(string_agg((to_jsonb(x) - 'published_at')::text, '|' ORDER BY"
            f" (to_jsonb(x) - 'published_at')::text), '')) FROM \"{t[0]}\".\"{t[1]}\" x)"
            for t in tables
        )

    def __call__(self) -> tuple:
        return tuple(self._loop.run_until_complete(self._conn.fetchrow(self._sql)))

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()
