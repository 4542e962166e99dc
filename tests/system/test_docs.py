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


def test_grpcurl_describe_and_openapi_carry_the_protos_comments(stack):
    """Reflection used to serve descriptors without source info: `describe` showed bare signatures."""
    import json
    import urllib.request

    _, ports = stack
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"

    def describe(port: int, symbol: str) -> str:
        done = subprocess.run([grpcurl, "-plaintext", f"127.0.0.1:{port}", "describe", symbol],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "An operator's manual credit (creating the wallet on the first top-up)" in describe(
        ports["wallet"], "callersync.wallet.v1.WalletService")
    assert "At least 2500 ($25)" in describe(ports["wallet"], "callersync.wallet.v1.TopUpRequest")
    assert "Connected less than 30 s (29.999 s is free)" in describe(
        ports["billing"], "callersync.billing.v1.DecisionRule")
    assert "Rung first; at most one per ZIP." in describe(ports["routing"], "callersync.routing.v1.ClaimPosition")
    assert "grpc.health.v1.Health" in describe(ports["routing"], "grpc.health.v1.Health")

    with urllib.request.urlopen(f"http://127.0.0.1:{ports['gateway']}/openapi.json", timeout=10) as reply:
        doc = json.loads(reply.read())
    top_up = doc["paths"]["/v1/wallets/{contractor_id}:topUp"]["post"]
    assert top_up["description"].startswith("An operator's manual credit (creating the wallet on the first top-up)")
    body = doc["components"]["schemas"][top_up["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                        .rsplit("/", 1)[1]]
    assert "At least 2500 ($25)" in body["properties"]["amountCents"]["description"]
    state = doc["components"]["schemas"]["callersync.billing.v1.RefundState"]
    assert "`REFUND_STATE_PENDING_REVIEW`: Spam or system bug waiting for an operator." in state["description"]
    # Every operation says what it does, beyond the gRPC method it maps to.
    undocumented = [f"{verb} {path}" for path, ops in doc["paths"].items() for verb, op in ops.items()
                    if op["description"].startswith("gRPC ")]
    assert undocumented == []
