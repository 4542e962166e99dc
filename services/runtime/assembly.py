"""What every service's app.py builds on: its PostgreSQL pool, its Redis client and a pipelined connection alike,
and the gRPC server that closes them after the service's own parts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import asyncpg
import grpc
import redis.asyncio as redis

from services.runtime import authz
from services.runtime.config import Settings
from services.runtime.db import create_pool
from services.runtime.redis_client import create_redis
from services.runtime.redis_pipe import RedisPipe
from services.runtime.server import Cleanup, GrpcServer


@dataclasses.dataclass(frozen=True)
class Plumbing:
    settings: Settings
    pool: asyncpg.Pool
    redis: redis.Redis
    pipe: RedisPipe  # scripts and outbox batches, one pipelined connection

    @classmethod
    async def open(cls, settings: Settings, redis_connections: int = 32) -> Plumbing:
        pool = await create_pool(settings.database_url, settings.db_pool_size)
        client = create_redis(settings.redis_url, max_connections=redis_connections)
        return cls(settings, pool, client, RedisPipe.like(client))

    def server(self, name: str, service_full_name: str, add_servicer: Callable[[grpc.aio.Server], None], port: int,
               access: authz.AccessTable, cleanups: Sequence[Cleanup]) -> GrpcServer:
        """The service's server. Cleanups run newest first: the service's own (relays, consumers, channels), then
        the pool and the Redis connections they use."""
        return GrpcServer(
            name, service_full_name, add_servicer, host=self.settings.host, port=port,
            max_concurrent_rpcs=self.settings.max_concurrent_rpcs, access=access,
            cleanups=[self.pool.close, self.redis.aclose, self.pipe.aclose, *cleanups],
        )
