"""Servers of the fault tests' own (embedded PostgreSQL and Valkey, which a test may restart or flush) and the
three services on them as real processes, shared by every test in this folder."""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import pytest

from services.runtime.embedded import EmbeddedPostgres, EmbeddedValkey
from tests.system.processes import callersync_env, run_cli
from tests.system.stack import start_stack, use_mtls


@pytest.fixture(scope="package")
def own_servers():
    # Not under pytest's basetemp: the embedded server runs as another user that must traverse the folders above
    # its data directory, and any other pytest session starting on the machine resets /tmp/pytest-of-<user> to
    # 0700, after which `pg_ctl restart` fails with "could not access directory ...: Permission denied".
    folder = pathlib.Path(tempfile.mkdtemp(prefix="callersync-faults-"))
    pg, vk = EmbeddedPostgres(folder), EmbeddedValkey(folder)
    db_url, redis_url = pg.start(), vk.start()
    try:
        run_cli("migrate", env=callersync_env(CALLERSYNC_DATABASE_URL=db_url), timeout=120).check_returncode()
        yield pg, vk, db_url, redis_url
    finally:
        vk.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def stack(own_servers):
    _, _, db_url, redis_url = own_servers
    running = start_stack(db_url, redis_url, mtls=use_mtls(True))
    yield running
    running.stop()
