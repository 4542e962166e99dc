"""Process hygiene for `callersync up`'s children: a title naming what the process is, and dying with the
parent. Without the title, `pgrep -f wallet` matches every stack's wallet alike; without the parent-death
signal, SIGKILL of `up` leaves its services serving, unsupervised."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def set_title(title: str) -> None:
    """What ps, top and pgrep show: `callersync wallet :50051 data=/srv/stack/.callersync`."""
    try:
        import setproctitle
    except ImportError:  # a platform without a wheel: the title is a convenience, never a reason to stop
        return
    setproctitle.setproctitle(title)


def process_title(name: str, port: int) -> str:
    """`callersync wallet :50051 data=/srv/a/.callersync`: which stack's wallet, for ps and pgrep -f."""
    data_dir = os.environ.get("CALLERSYNC_DATA_DIR", "")
    return f"callersync {name} :{port}" + (f" data={data_dir}" if data_dir else "")


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """For Popen(preexec_fn=...): the kernel sends SIGTERM to this child when its parent dies (Linux only),
    so it drains as on any stop. Runs between fork and exec, hence libc loaded beforehand."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
