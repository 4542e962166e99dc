"""Stops `callersync up`'s embedded PostgreSQL and Valkey when `up` dies without stopping them (SIGKILL, OOM).

pg_ctl daemonises the postmaster, so it is no child of `up` and no parent-death signal reaches it. This small
process is: `up` starts it with a pipe on its stdin and never writes to it. When `up` exits, however it
exits, the kernel closes the pipe and this process reads end-of-file: it then stops the servers unless `up`
said `detach` first (a clean stop, where `up` stops them itself).

    python -m services.runtime.watchdog --pgdata DIR --pid VALKEY_PID --title TITLE
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys
import time

from services.runtime.processes import set_title


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.watchdog")
    parser.add_argument("--pgdata", default="")
    parser.add_argument("--pid", type=int, action="append", default=[], help="a process to SIGTERM")
    parser.add_argument("--title", default="callersync watchdog")
    args = parser.parse_args(argv)
    set_title(args.title)
    # Ctrl-C at the terminal reaches the whole foreground group; this process waits for `up` instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    said = sys.stdin.read()  # blocks until `up` closes its end, or dies
    if said.strip() == "detach":
        return 0
    print("callersync watchdog: `callersync up` is gone; stopping its embedded servers", file=sys.stderr, flush=True)
    for pid in args.pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if args.pgdata:
        stop_postmaster(pathlib.Path(args.pgdata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
