"""The crash hook tests use to kill billing between a wallet call and billing's own commit."""

from __future__ import annotations

import os
import signal


class FaultHook:
    """When the named file exists at the point between a wallet call and billing's own commit, billing deletes
    it and SIGKILLs itself, as a crash at the worst moment would (CALLERSYNC_FAULT_FILE,
    tests/billing/test_crash.py)."""

    def __init__(self, path: str | None) -> None:
        self._path = path

    def crash_point(self) -> None:
        if self._path and os.path.exists(self._path):
            os.remove(self._path)
            os.kill(os.getpid(), signal.SIGKILL)
