"""Every database a release of main ever migrated still upgrades, and ends exactly like a fresh one.

Reads main's own history with git (CI runs on a clone); outside a git checkout these tests are skipped."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import subprocess

import asyncpg
import grpc
import pytest

from callersync.wallet.v1 import wallet_pb2, wallet_pb2_grpc
from services.ops import SERVICES
from services.runtime.db import REPEATABLE, migrate, migration_files, superseded_checksums
from services.wallet.app import WALLET
from tests.conftest import empty_database, serving

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = {name: service.migrations.relative_to(ROOT) for name, service in SERVICES.items()}


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def _in_git() -> bool:
    try:
        return git("rev-parse", "--is-inside-work-tree").strip() == "true"
    except (OSError, subprocess.CalledProcessError):
        return False


pytestmark = pytest.mark.skipif(not _in_git(), reason="needs the repository's git history")


def migration_sets() -> list[str]:
    """Every commit of main's history that changed a migrations folder, oldest first."""
    return git("log", "--reverse", "--format=%H", "--", *map(str, FOLDERS.values())).split()


def files_at(commit: str, folder: pathlib.Path) -> dict[str, str]:
    """The folder's numbered migrations at that commit (none when the service did not exist yet)."""
    paths = [pathlib.PurePosixPath(p) for p in git("ls-tree", "--name-only", commit, f"{folder}/").split()]
    return {p.name: git("show", f"{commit}:{p}") for p in sorted(paths) if p.name[:4].isdigit() and p.suffix == ".sql"}


def test_a_committed_migration_is_never_edited():
    """Each numbered migration has had one text in main's history, or its earlier texts are named in
    superseded.txt (and so brought current by R__functions.sql, which the upgrade test below proves)."""
    unexplained = []
    for folder in FOLDERS.values():
        accepted = superseded_checksums(ROOT / folder)
        for path in migration_files(ROOT / folder):
            current = hashlib.sha256(path.read_bytes()).hexdigest()
            rel = str(path.relative_to(ROOT))
            for commit in git("log", "--format=%H", "--", rel).split():
                earlier = hashlib.sha256(git("show", f"{commit}:{rel}").encode()).hexdigest()
                if earlier != current and earlier not in accepted.get(path.name, ()):
                    unexplained.append(f"{rel} differs from its text at {commit[:10]}")
    assert not unexplained, "committed migrations were edited (add a new migration instead):\n" + "\n".join(
        unexplained)


async def schema_of(conn: asyncpg.Connection) -> dict[str, list[tuple]]:
    """What a database's schemas are made of, in an order that does not depend on how they were built."""
    schemas = list(SERVICES)
    queries = {
        # By name, not ordinal_position: a database that applied two branches' migrations in the other order
        # (billing 0003 of t17-dashboard before 0002 of t13-input) has the same columns in another order, and no
        # code reads a table's column by position.
        "columns": "SELECT table_schema, table_name, column_name, data_type, is_nullable,"
                   " column_default FROM information_schema.columns WHERE table_schema = ANY($1)",
        "indexes": "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname = ANY($1)",
        "constraints": "SELECT n.nspname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                       " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = ANY($1)",
        "functions": "SELECT n.nspname, p.proname, pg_get_functiondef(p.oid) FROM pg_proc p"
                     " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($1)",
        "types": "SELECT n.nspname, t.typname, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod)"
                 " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                 " JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'"
                 " JOIN pg_attribute a ON a.attrelid = c.oid WHERE n.nspname = ANY($1)",
        "triggers": "SELECT n.nspname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
                    " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE NOT t.tgisinternal AND n.nspname = ANY($1)",
    }
    return {what: sorted(tuple(r) for r in await conn.fetch(sql, schemas)) for what, sql in queries.items()}


async def migrate_all(conn: asyncpg.Connection) -> None:
    for service in SERVICES.values():
        await migrate(conn, service.schema, service.migrations)


async def test_every_earlier_migration_set_upgrades_to_todays_schema(servers, settings, tmp_path, contractor):
    fresh_url = await empty_database(servers)
    conn = await asyncpg.connect(fresh_url)
    try:
        await migrate_all(conn)
        today = await schema_of(conn)
    finally:
        await conn.close()
    assert "settle_calls" in {f[1] for f in today["functions"]}, "the functions file was not applied"

    commits = migration_sets()
    assert commits, "no migration history found"
    oldest_url = ""
    for commit in commits:
        url = await empty_database(servers)
        conn = await asyncpg.connect(url)
        try:
            for name, folder in FOLDERS.items():
                old = tmp_path / commit[:10] / name
                old.mkdir(parents=True)
                for filename, text in files_at(commit, folder).items():
                    (old / filename).write_text(text)
                await migrate(conn, SERVICES[name].schema, old)  # as that release did
            await migrate_all(conn)  # today's release starting on it
            upgraded = await schema_of(conn)
            versions = {r["version"] for r in await conn.fetch("SELECT version FROM wallet.schema_migrations")}
        finally:
            await conn.close()
        for what in today:
            assert upgraded[what] == today[what], f"{what} differ after upgrading from {commit[:10]}"
        assert REPEATABLE in versions
        oldest_url = oldest_url or url

    # And the upgraded database (from the oldest set, the one furthest behind) serves money as a fresh one does.
    wallet_settings = dataclasses.replace(settings, database_url=oldest_url)
    async with serving(await WALLET.build(wallet_settings, 0)) as target, grpc.aio.insecure_channel(target) as ch:
        stub = wallet_pb2_grpc.WalletServiceStub(ch)
        await stub.SetPauseThreshold(wallet_pb2.SetPauseThresholdRequest(contractor_id=contractor,
                                                                         threshold_cents=4500))
        charged = await stub.Charge(wallet_pb2.ChargeRequest(contractor_id=contractor, amount_cents=2500,
                                                             idempotency_key=f"upgrade-{contractor}"))
        again = await stub.Charge(wallet_pb2.ChargeRequest(contractor_id=contractor, amount_cents=2500,
                                                           idempotency_key=f"upgrade-{contractor}"))
        wallet = await stub.GetWallet(wallet_pb2.GetWalletRequest(contractor_id=contractor))
    assert again.entry.entry_id == charged.entry.entry_id
    assert wallet.wallet.balance_cents == -2500 and wallet.wallet.paused
