"""The three services as real processes on a database and Redis of their own, for tests that treat the system
as a black box (fuzzing, faults)."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port
from tests.system.processes import Process, callersync_env

SCHEMAS = ("wallet", "billing", "routing")


@dataclasses.dataclass
class Stack:
    database_url: str
    env: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, Process]

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def start(self, service: str) -> None:
        self.processes[service] = Process("serve", service, env=self.env)
        self.processes[service].wait_for(f"{service} listening", timeout=60)
        with grpc.insecure_channel(self.target(service)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()


def start_stack(database_url: str, redis_url: str, **extra_env: str) -> Stack:
    ports = {name: free_port() for name in SCHEMAS}
    env = callersync_env(
        CALLERSYNC_DATABASE_URL=database_url,
        CALLERSYNC_REDIS_URL=redis_url,
        CALLERSYNC_OUTBOX_POLL_MS="50",
        CALLERSYNC_LOG_LEVEL="WARNING",
        **{f"CALLERSYNC_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        **{f"CALLERSYNC_{n.upper()}_TARGET": f"127.0.0.1:{p}" for n, p in ports.items()},
        **extra_env,
    )
    stack = Stack(database_url, env, ports, {})
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
