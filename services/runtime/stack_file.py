"""`.callersync/stack.json`: what `callersync up` started and where, so the other commands (migrate, reconcile,
token, demo) find the running stack by themselves instead of needing CALLERSYNC_DATABASE_URL pasted from
up's output.

Which data dir: `--data-dir`, else CALLERSYNC_DATA_DIR, else the nearest `.callersync` in this directory or one
of its parents (the way git finds `.git`), so the commands work from anywhere inside the checkout.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

FILE = "stack.json"
DEFAULT_DIR = ".callersync"


def find_data_dir(explicit: pathlib.Path | None = None, env: dict[str, str] | None = None) -> pathlib.Path | None:
    """The data dir of the stack these commands mean, or None when there is none to be found."""
    if explicit is not None:
        return explicit.resolve()
    env_dir = (os.environ if env is None else env).get("CALLERSYNC_DATA_DIR", "")
    if env_dir:
        return pathlib.Path(env_dir).resolve()
    here = pathlib.Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_DIR).is_dir():
            return folder / DEFAULT_DIR
    return None


def write(data_dir: pathlib.Path, **fields: Any) -> None:
    """Replaces the file atomically (a reader never sees half of it); 0600: it names database URLs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".stack-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(fields, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, data_dir / FILE)


def read(data_dir: pathlib.Path) -> dict[str, Any] | None:
    try:
        state = json.loads((data_dir / FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def remove(data_dir: pathlib.Path) -> None:
    (data_dir / FILE).unlink(missing_ok=True)


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NoStack(Exception):
    """No database to use: neither configured nor a running `callersync up` to be found (exit code 2)."""


def database_url(configured: str, data_dir: pathlib.Path | None) -> tuple[str, str]:
    """(url, where it came from): CALLERSYNC_DATABASE_URL when set, else the running stack's embedded one."""
    if configured:
        return configured, "CALLERSYNC_DATABASE_URL"
    if data_dir is None:
        raise NoStack(
            "no database: CALLERSYNC_DATABASE_URL is not set and no .callersync data dir was found here or in a "
            "parent directory; start the stack with `callersync up`, or pass --data-dir"
        )
    state = read(data_dir)
    if state is None or not state.get("database_url"):
        raise NoStack(f"no database: {data_dir} has no {FILE} (is `callersync up` running with that data dir?)")
    if not pid_alive(state.get("pid")):
        raise NoStack(
            f"no database: the `callersync up` that wrote {data_dir / FILE} (pid {state.get('pid')}) is not "
            "running; start it again with `callersync up`"
        )
    return str(state["database_url"]), str(data_dir / FILE)
