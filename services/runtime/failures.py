"""Infrastructure failures a handler did not translate itself, mapped to the status a client can act on:
the safety net under every service's own storage_errors()."""

from __future__ import annotations

import asyncpg
import redis.exceptions

from services.runtime.db import CONNECTION_ERRORS
from services.runtime.errors import Conflict, DomainError, InvalidArgument, Unavailable


def as_domain_error(err: BaseException) -> DomainError | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, DomainError):
            return seen
        if isinstance(seen, asyncpg.exceptions.DataError):
            # Class 22: a value PostgreSQL cannot store (a NUL character, an out-of-range number or date).
            # The transaction rolled back, so nothing was written.
            return InvalidArgument(f"a value in the request cannot be stored: {seen.args[0] if seen.args else seen}",
                                   reason="UNSTORABLE_VALUE")
        if isinstance(seen, (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)):
            return Conflict("the database aborted this call to resolve a concurrent update; retry")
        if isinstance(seen, CONNECTION_ERRORS):
            return Unavailable(f"PostgreSQL is unreachable ({type(seen).__name__}); retry shortly")
        if isinstance(seen, redis.exceptions.RedisError) and not isinstance(seen, redis.exceptions.ResponseError):
            # Connection, timeout, protocol (something that is not Redis answered): the server, not the request.
            return Unavailable(f"Redis is unreachable ({type(seen).__name__}); retry shortly")
        seen = seen.__cause__ or seen.__context__
    return None
