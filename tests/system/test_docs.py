"""Every command block of README.md and docs/*.md runs against a fresh `callersync up`, as a reader pastes it:
a doc example can no longer rot. Blocks that cannot run here say why, in a `<!-- not-run: why -->` line."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.system import doc_blocks
from tests.system.processes import Process, callersync_env

MAX_NOT_RUN = 6  # deployment commands, the foreground `up`, the test suite, the demo: keep it few
COMMAND_START = re.compile(r"^\s*(\$ )?(grpcurl|curl|callersync|psql|kubectl|docker|pip|pytest)\b", re.M)


def test_every_command_looking_block_is_run_or_says_why_not():
    not_run = []
    for path in doc_blocks.doc_files():
        for block in doc_blocks.blocks(path):
            if block.not_run:
                not_run.append(f"{block.where}: {block.not_run}")
            elif block.lang not in (*doc_blocks.COMMAND_LANGS, "sql", "json", "yaml", "text", "proto"):
                # An unlabelled block of commands would be skipped silently: label it sh (or mark it).
                assert not COMMAND_START.search(block.text), f"{block.where}: commands in a ```{block.lang} block"
    assert len(not_run) <= MAX_NOT_RUN, "\n".join(not_run)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("docs")
    ports = {name: free_port() for name in doc_blocks.DEFAULT_PORTS}
    env = callersync_env(**{f"CALLERSYNC_{name.upper()}_PORT": str(port) for name, port in ports.items()},
                         CALLERSYNC_LOG_FORMAT="text")
    up = Process("up", "--data-dir", str(home / ".callersync"), env=env)
    try:
        up.wait_for("CallerSync is up", timeout=120)
        yield home, ports
    finally:
        up.popen.send_signal(signal.SIGTERM)
        try:
            up.popen.wait(timeout=20)
        finally:
            up.kill()


@pytest.mark.parametrize("path", doc_blocks.doc_files(), ids=lambda p: str(p.relative_to(doc_blocks.ROOT)))
def test_doc_commands_run_against_a_live_stack(stack, path: Path):
    home, ports = stack
    bin_dir = str(Path(sys.executable).parent)
    assert shutil.which("grpcurl", path=bin_dir) and shutil.which("jq"), "grpcurl ([test] extra) and jq are needed"
    from services.runtime.embedded import EmbeddedPostgres
    from services.runtime.stack_file import read

    state = read(home / ".callersync")
    assert state is not None
    psql = str(EmbeddedPostgres(home / ".callersync").bin_dir / "psql")
    script = doc_blocks.script(path, ports, psql, state["database_url"])
    if script is None:
        pytest.skip(f"{path.name} has no command blocks")
    # The reader's shell: callersync, grpcurl and jq on PATH, nothing configured, in the stack's directory.
    env = callersync_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-c", script], cwd=home, env=env, capture_output=True, text=True, timeout=300)
    blocks_run = re.findall(r">>> block (\S+)", done.stderr)
    assert done.returncode == 0, (
        f"the block at {blocks_run[-1] if blocks_run else '?'} failed (exit {done.returncode}):\n"
        f"--- stderr ---\n{done.stderr[-4000:]}\n--- stdout ---\n{done.stdout[-3000:]}"
    )
