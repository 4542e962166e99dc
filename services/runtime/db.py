"""asyncpg pool, forward-only SQL migrations per service schema, and storage-error translation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import pathlib
from collections.abc import AsyncIterator

import asyncpg

from services.runtime.errors import Conflict, Unavailable

log = logging.getLogger("callersync.db")

CONNECTION_ERRORS = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    # A pooled connection that already received the server's shutdown message fails its next query with
    # "cannot switch to state ...; another operation is in progress": the server went away, not the request.
    asyncpg.exceptions.InternalClientError,
)


@contextlib.asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    """Turns driver failures into retryable domain errors at the storage boundary."""
    try:
        yield
    except (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError) as err:
        raise Conflict(f"the database resolved a concurrent update by aborting this one ({err}); retry") from err
    except CONNECTION_ERRORS as err:
        raise Unavailable(f"PostgreSQL is unreachable ({type(err).__name__}); retry shortly") from err


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (settings are transaction-local, advisory locks transaction-scoped, no
    LISTEN), so the default reset (RESET ALL, UNLISTEN, unlock all: a round trip per release) is skipped. An
    open transaction is still rolled back by asyncpg before this runs."""


async def create_pool(url: str, size: int, *, attempts: int = 1) -> asyncpg.Pool:
    if not url:
        raise SystemExit("CALLERSYNC_DATABASE_URL is not set (callersync up starts an embedded PostgreSQL)")
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        try:
            return await asyncpg.create_pool(
                url, min_size=min(2, size), max_size=size, command_timeout=30, statement_cache_size=256,
                reset=_no_session_state,
            )
        except (OSError, asyncpg.PostgresError) as err:
            last = err
            await asyncio.sleep(1)
    raise SystemExit(f"cannot connect to PostgreSQL at {redact(url)}: {last}")


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


REPEATABLE = "R__functions.sql"


def migration_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def superseded_checksums(folder: pathlib.Path) -> dict[str, set[str]]:
    """Earlier texts of edited migrations that databases may have applied (migrations/superseded.txt)."""
    path = folder / "superseded.txt"
    accepted: dict[str, set[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, checksum = line.split()[:2]
                accepted.setdefault(name, set()).add(checksum)
    return accepted


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def migrate(conn: asyncpg.Connection, schema: str, folder: pathlib.Path) -> list[str]:
    """Applies the folder's not-yet-applied migrations in order, each in its own transaction, then the
    repeatable R__functions.sql when its text changed since it was last applied.

    Numbered migrations are forward-only: an applied file whose text changed is an error, never re-run
    (unless superseded.txt names the text the database applied). An advisory lock keeps two starting
    replicas from migrating at once."""
    applied_now: list[str] = []
    lock_key = int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch(f'SELECT version, checksum FROM "{schema}".schema_migrations')
        }
        superseded = superseded_checksums(folder)
        for path in migration_files(folder):
            text = path.read_text()
            checksum = _checksum(text)
            if path.name in done:
                if done[path.name] in superseded.get(path.name, ()):
                    log.debug("%s/%s was applied in an earlier text; %s brings it current", schema, path.name,
                              REPEATABLE)
                elif done[path.name] != checksum:
                    raise SystemExit(
                        f"migration {schema}/{path.name} was edited after it was applied; "
                        "migrations are forward-only: add a new file instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (version, checksum) VALUES ($1, $2)',
                    path.name,
                    checksum,
                )
            applied_now.append(path.name)
            log.info("applied migration %s/%s", schema, path.name)
        repeatable = folder / REPEATABLE
        if repeatable.exists():
            text = repeatable.read_text()
            checksum = _checksum(text)
            if done.get(REPEATABLE) != checksum:
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version, checksum) VALUES ($1, $2)'
                        " ON CONFLICT (version) DO UPDATE SET checksum = excluded.checksum, applied_at = now()",
                        REPEATABLE,
                        checksum,
                    )
                applied_now.append(REPEATABLE)
                log.info("applied %s/%s (its text changed)", schema, REPEATABLE)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now
