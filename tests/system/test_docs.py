"""Every command block of README.md and docs/*.md runs against a fresh `callersync up`, as a reader pastes it,
and prints what the page says it prints: a doc example can no longer rot. Blocks that cannot run here say why,
in a `<!-- not-run: why -->` line. How a page states what a block prints (`<!-- expect: ... -->`,
`<!-- expect-jq: ... -->`, a sample reply in a ```json block): tests/system/doc_blocks.py."""

from __future__ import annotations

import json
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

# Deployment commands, the foreground `up`, the test suites, the demo, the benchmarks: keep it few.
MAX_NOT_RUN = 8
COMMAND_START = re.compile(
    r"^\s*(\$ )?(\S*/)?(grpcurl|curl|callersync|psql|kubectl|docker|pip|pytest|python3?)(?=\s|$)", re.M)


def test_every_command_looking_block_is_run_or_says_why_not():
    not_run = []
    for path in doc_blocks.doc_files():
        for block in doc_blocks.blocks(path):
            if block.not_run:
                not_run.append(f"{block.where}: {block.not_run}")
            elif block.lang not in (*doc_blocks.COMMAND_LANGS, "sql", "json", "yaml", "text", "proto"):
                # An unlabelled or indented block of commands would be skipped silently: label it sh (or mark it).
                kind = "an indented block" if block.indented else f"a ```{block.lang} block"
                assert not COMMAND_START.search(block.text), f"{block.where}: commands in {kind}"
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
    out_dir = home / "doc-outputs"
    out_dir.mkdir(exist_ok=True)
    script = doc_blocks.script(path, ports, psql, state["database_url"], out_dir)
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
    checked = [f"{block.where}: {problem}" for block in doc_blocks.blocks(path) if block.runs
               for problem in unmet_expectations(block, doc_blocks.output_file(out_dir, block).read_text())]
    assert checked == [], "\n".join(checked)


def unmet_expectations(block: doc_blocks.Block, output: str) -> list[str]:
    """What the page says the block prints and it did not (each with the output, to see why)."""
    documents = doc_blocks.json_documents(output)
    unmet = []
    for expect in block.expects:
        if expect.kind == "text" and expect.what not in output:
            unmet.append(f"line {expect.line}: {expect.what!r} not printed")
        elif expect.kind == "jq":
            done = subprocess.run(["jq", "-e", expect.what], input=json.dumps(documents), capture_output=True,
                                  text=True, timeout=30)
            if done.returncode != 0:
                said = done.stdout.strip() or done.stderr.strip()
                unmet.append(f"line {expect.line}: jq {expect.what!r} gave {said}")
        elif expect.kind == "reply":
            if not documents:
                unmet.append(f"the sample reply at line {expect.line}: the block printed no JSON")
                continue
            problems = doc_blocks.reply_mismatches(json.loads(expect.what), documents[-1])
            unmet += [f"the sample reply at line {expect.line}, {problem}" for problem in problems]
    return [f"{problem}\n--- output ---\n{output[-3000:]}" for problem in unmet[:1]] + unmet[1:]


def test_grpcurl_describe_and_openapi_carry_the_protos_comments(stack):
    """Reflection used to serve descriptors without source info: `describe` showed bare signatures."""
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
