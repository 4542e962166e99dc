"""Stops `callersync up`'s embedded PostgreSQL and Valkey when `up` dies without stopping them (SIGKILL, OOM).

pg_ctl daemonises the postmaster and Valkey runs in a session of its own, so neither is a child that dies with
`up`. This small process is: `up` starts it before the first embedded server, with a pipe on its stdin, and
writes one line per server as it starts (`pid N`). When `up` exits, however it exits, the kernel closes the
pipe and this process reads end-of-file: it then stops every server it was told of, and the PostgreSQL of
--pgdata (waiting for an initdb or pg_ctl start that `up` left running), unless `up` wrote `detach` first (a
clean stop, where `up` stops them itself). Started first, it leaves no moment of start-up unwatched.

    python -m services.runtime.watchdog --pgdata DIR --title TITLE
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import IO

from services.runtime.processes import set_title

STARTERS = ("initdb", "pg_ctl")  # PostgreSQL's tools that create or start a server in a data dir
STARTER_WAIT_S = 60


def stop_postmaster(pgdata: pathlib.Path, timeout_s: float = 30) -> None:
    """What `pg_ctl stop -m fast` does, without needing to run as the server's user (the data dir may not be
    reachable by it from here): SIGINT to the postmaster named in postmaster.pid, then wait for it to go."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
    except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
        return
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def starter_running(pgdata: pathlib.Path) -> bool:
    """An initdb or pg_ctl on this data dir still runs: `up` died while it was creating or starting the server,
    and the postmaster it starts would outlive everyone if stopped before it exists."""
    wanted = str(pgdata).encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).decode(errors="replace") in STARTERS and wanted in argv:
            return True
    return False


def read_orders(stream: IO[str]) -> tuple[bool, list[int]]:
    """(detached, pids): blocks until `up` writes `detach`, closes its end or dies."""
    pids: list[int] = []
    for line in iter(stream.readline, ""):
        word, _, value = line.strip().partition(" ")
        if word == "detach":
            return True, pids
        if word == "pid" and value.isdigit():
            pids.append(int(value))
    return False, pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.watchdog")
    parser.add_argument("--pgdata", default="")
    parser.add_argument("--title", default="callersync watchdog")
    args = parser.parse_args(argv)
    set_title(args.title)
    # Ctrl-C at the terminal reaches the whole foreground group; this process waits for `up` instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    detached, pids = read_orders(sys.stdin)
    if detached:
        return 0
    print("callersync watchdog: `callersync up` is gone; stopping its embedded servers", file=sys.stderr, flush=True)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if args.pgdata:
        pgdata = pathlib.Path(args.pgdata)
        end = time.monotonic() + STARTER_WAIT_S
        while starter_running(pgdata) and time.monotonic() < end:
            time.sleep(0.1)
        stop_postmaster(pgdata)
    return 0


class Watchdog:
    """`up`'s end of the pipe: start it before the first embedded server, tell it of each as it starts."""

    def __init__(self, title: str, pgdata: pathlib.Path | None, env: dict[str, str]) -> None:
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "services.runtime.watchdog", "--title", title,
             *(["--pgdata", str(pgdata)] if pgdata is not None else [])],
            stdin=subprocess.PIPE, env=env,
        )

    def _say(self, line: str) -> None:
        stdin = self._popen.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.write(f"{line}\n".encode())
            stdin.flush()

    def watch(self, pid: int) -> None:
        self._say(f"pid {pid}")

    def detach(self) -> None:
        """`up` stops its servers itself: the watchdog exits without touching them."""
        self._say("detach")
        with contextlib.suppress(BrokenPipeError):
            assert self._popen.stdin is not None
            self._popen.stdin.close()
        self._popen.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
