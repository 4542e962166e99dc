"""A service whose PostgreSQL or Redis is not there at start says so in one line and exits non-zero, or,
when told to wait, waits and then serves. It never serves without them."""

import subprocess
import sys

import pytest

from services.runtime.embedded import EmbeddedValkey
from tests.conftest import free_port
from tests.system.processes import Process, callersync_env


def serve(service: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "serve", service],
                          env=callersync_env(**env), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("service", ["wallet", "billing", "routing"])
def test_no_postgresql_is_one_line_and_a_non_zero_exit(service, servers):
    result = serve(service, CALLERSYNC_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/x",
                   CALLERSYNC_REDIS_URL=servers.redis_url)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()
    assert len(last) == 1, result.stderr
    assert last[0].startswith(f"{service}: cannot reach PostgreSQL at postgresql://nobody")


def test_no_redis_is_one_line_and_a_non_zero_exit(database_url):
    result = serve("wallet", CALLERSYNC_DATABASE_URL=database_url,
                   CALLERSYNC_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "wallet: cannot reach Redis at redis://127.0.0.1:" in result.stderr


def test_told_to_wait_it_waits_for_redis_and_then_serves(database_url, tmp_path):
    redis_port, wallet_port = free_port(), free_port()
    wallet = Process("serve", "wallet", env=callersync_env(
        CALLERSYNC_DATABASE_URL=database_url, CALLERSYNC_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        CALLERSYNC_WALLET_PORT=str(wallet_port), CALLERSYNC_STARTUP_WAIT_S="60", CALLERSYNC_LOG_FORMAT="text"))
    valkey = EmbeddedValkey(tmp_path, port=redis_port)
    try:
        wallet.wait_for("waiting for Redis", timeout=30)
        assert wallet.popen.poll() is None
        valkey.start()
        wallet.wait_for("wallet listening", timeout=30)
    finally:
        wallet.kill()
        valkey.stop()
