"""Running CallerSync's own command line as real processes, the way operators do."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time


def callersync_env(**overrides: str) -> dict[str, str]:
    """The environment without any CALLERSYNC_* the test runner has, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLERSYNC_")}
    env.update(overrides)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60, cwd: str | os.PathLike[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=timeout,
        cwd=cwd,
    )


class Process:
    """A `callersync ...` child whose output lines are collected in the background."""

    def __init__(self, *args: str, env: dict[str, str], new_session: bool = False) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,  # a process group of its own, as a terminal's foreground job has
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None:
                    break
                continue
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed within {timeout}s; output:\n{self.output()}")

    def output(self) -> str:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "".join(self.lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
