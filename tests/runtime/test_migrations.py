"""Forward-only migrations: applied once, in order, never silently re-run or edited."""

import asyncio
import pathlib
import shutil

import asyncpg
import pytest

from services.runtime.db import migrate
from services.wallet.app import WALLET
from tests.conftest import fresh_database


async def test_migrating_again_applies_nothing(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn, WALLET.schema, WALLET.migrations) == []
        versions = await conn.fetch("SELECT version FROM wallet.schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == sorted(p.name for p in WALLET.migrations.glob("*.sql"))


async def test_an_edited_migration_is_refused(servers, tmp_path: pathlib.Path):
    url = await fresh_database(servers)
    folder = tmp_path / "migrations"
    shutil.copytree(WALLET.migrations, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(SystemExit, match="forward-only"):
            await migrate(conn, WALLET.schema, folder)
    finally:
        await conn.close()


async def test_two_replicas_starting_at_once_apply_each_migration_once(servers, tmp_path: pathlib.Path):
    url = await fresh_database(servers)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_counter.sql").write_text("CREATE TABLE race.counter (n int); INSERT INTO race.counter VALUES (1);")
    (folder / "0002_more.sql").write_text("INSERT INTO race.counter VALUES (2);")
    conns = [await asyncpg.connect(url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c, "race", folder) for c in conns))
        rows = await conns[0].fetch("SELECT n FROM race.counter ORDER BY n")
    finally:
        for c in conns:
            await c.close()
    assert sorted(sum(applied, [])) == ["0001_counter.sql", "0002_more.sql"]
    assert [r["n"] for r in rows] == [1, 2]


async def test_a_failing_migration_leaves_nothing_half_applied(servers, tmp_path: pathlib.Path):
    url = await fresh_database(servers)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_broken.sql").write_text("CREATE TABLE broken.t (n int); SELECT no_such_function();")
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, "broken", folder)
        assert await conn.fetchval("SELECT to_regclass('broken.t')") is None
        assert await conn.fetchval("SELECT count(*) FROM broken.schema_migrations") == 0
    finally:
        await conn.close()
