"""The crash hook tests use to kill a service at the worst moment: between another system's word that money
moved (the wallet's answer to billing; the payment provider's to the wallet) and the service's own commit."""

from __future__ import annotations

import os
import signal


class FaultHook:
    """When the named file (CALLERSYNC_FAULT_FILE) exists at a crash point, the process deletes it and SIGKILLs
    itself, as a crash there would (tests/billing/test_crash.py, tests/payments/test_crash.py)."""

    def __init__(self, path: str | None) -> None:
        self._path = path

    def crash_point(self) -> None:
        if self._path and os.path.exists(self._path):
            os.remove(self._path)
            os.kill(os.getpid(), signal.SIGKILL)
