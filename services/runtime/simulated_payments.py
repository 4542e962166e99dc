"""`callersync up` without a Stripe key: localstripe as a child process (dying with `up`), its webhook pointed
at the gateway, and the settings every service needs to use it; stack.json names its address for the other
commands. Payments are simulated: no card is ever charged."""

from __future__ import annotations

import pathlib
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from services.runtime.ports import free_port, port_is_free
from services.runtime.processes import die_with_parent

DEFAULT_PORT = 8420


class SimulatedPayments:
    def __init__(self, data_dir: pathlib.Path, port: int = DEFAULT_PORT) -> None:
        self._store = data_dir.resolve() / "localstripe.pickle"
        self.port = port if port_is_free("127.0.0.1", port) else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_secret = "whsec_" + secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, str]:
        """Starts localstripe and returns the CALLERSYNC_STRIPE_* settings that point the services at it."""
        self._store.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "services.runtime.localstripe_runner", str(self._store), "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"localstripe exited with code {self._proc.returncode}")
            try:
                urllib.request.urlopen(f"{self.url}/js.stripe.com/v3/", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        else:
            raise RuntimeError(f"localstripe did not answer on {self.url}")
        return {
            "CALLERSYNC_STRIPE_API_KEY": "sk_test_localstripe",
            "CALLERSYNC_STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
            "CALLERSYNC_STRIPE_API_BASE": self.url,
            "CALLERSYNC_STRIPE_WEBHOOK_SECRET": self.webhook_secret,
        }

    def send_webhooks_to(self, url: str) -> None:
        data = urllib.parse.urlencode({"url": url, "secret": self.webhook_secret}).encode()
        urllib.request.urlopen(f"{self.url}/_config/webhooks/callersync", data=data, timeout=5).close()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
