"""`callersync up` as a supervisor, and the commands that find its stack by themselves: a busy port stops the
start with one line naming it; SIGTERM in the middle of start-up stops everything; a killed service comes
back; a killed `up` leaves nothing running (the embedded PostgreSQL included); `reconcile`, `migrate` and
`token` find the stack from its data dir, with distinct exit codes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port
from tests.system.processes import Process, callersync_env, run_cli

SERVICES = ("wallet", "billing", "routing")


def stack_env(**extra: str) -> tuple[dict[str, str], dict[str, int]]:
    ports = {name: free_port() for name in (*SERVICES, "gateway")}
    env = callersync_env(**{f"CALLERSYNC_{name.upper()}_PORT": str(port) for name, port in ports.items()},
                         CALLERSYNC_LOG_FORMAT="text", **extra)
    return env, ports


def processes_of(data_dir: Path) -> list[psutil.Process]:
    """Every process that belongs to the stack on this data dir: titles name it, postgres runs in it."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(data_dir) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def wait_gone(data_dir: Path, timeout: float) -> list[psutil.Process]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = processes_of(data_dir)
        if not left:
            return []
        time.sleep(0.2)
    return processes_of(data_dir)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def healthy(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_get(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_busy_port_fails_the_start_with_one_line_naming_it(tmp_path):
    env, ports = stack_env()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["gateway"]))
        squatter.listen()
        up = Process("up", "--data-dir", str(tmp_path / "data"), env=env)
        try:
            assert up.popen.wait(timeout=30) == 1
        finally:
            up.kill()
    out = up.output()
    assert f"port {ports['gateway']} (gateway) on 127.0.0.1 is already in use" in out
    assert "CallerSync is up" not in out and "Traceback" not in out
    assert not processes_of((tmp_path / "data").resolve())


def wait_printed(up: Process, texts: list[str], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and up.popen.poll() is None:
        if all(text in up.output() for text in texts):
            return
        time.sleep(0.02)
    raise AssertionError(f"{texts} not all printed; output:\n{up.output()}")


@pytest.mark.parametrize("moment", [
    ["PostgreSQL (embedded)"],  # migrations, Valkey still to come
    [f"{name} listening" for name in SERVICES],  # ports open, gateway not up yet: the reported hang
])
def test_sigterm_at_any_moment_of_start_up_stops_everything(tmp_path, moment):
    env, ports = stack_env()
    data = (tmp_path / "data").resolve()
    up = Process("up", "--data-dir", str(data), env=env)
    try:
        wait_printed(up, moment, timeout=120)
        up.popen.send_signal(signal.SIGTERM)
        assert up.popen.wait(timeout=20) == 0
        assert "CallerSync stopped" in up.output()
        assert wait_gone(data, 10) == []
        assert not any(port_open(p) for p in ports.values())
        assert not (data / "stack.json").exists()
        assert "Traceback" not in up.output()
    finally:
        up.kill()


@pytest.mark.parametrize("moment", [
    "PostgreSQL (embedded)",  # Valkey, localstripe and the mail sink still to start
    "Valkey (embedded)",
])
def test_sigkill_at_any_moment_of_start_up_leaves_nothing_running(tmp_path, moment):
    """The watchdog used to start after every embedded server: a SIGKILL before then orphaned PostgreSQL."""
    env, ports = stack_env()
    data = (tmp_path / "data").resolve()
    up = Process("up", "--data-dir", str(data), env=env)
    try:
        wait_printed(up, [moment], timeout=120)
        up.popen.kill()
        up.popen.wait()
        left = wait_gone(data, 15)
        assert [" ".join(p.cmdline()) for p in left] == []
        assert not (data / "postgres" / "postmaster.pid").exists()
        assert not any(port_open(p) for p in ports.values())
    finally:
        up.kill()
        for process in processes_of(data):  # what the assertion found, so it outlives no failed run
            process.kill()


def test_ctrl_c_drains_the_services_before_the_embedded_servers_stop(tmp_path):
    """Ctrl-C at a terminal signals the foreground job's whole process group. The embedded Valkey and
    PostgreSQL are not in it, so they keep serving while the services drain, and `up` stops them last."""
    env, ports = stack_env()
    data = (tmp_path / "data").resolve()
    up = Process("up", "--data-dir", str(data), env=env, new_session=True)
    try:
        up.wait_for("CallerSync is up", timeout=120)
        group = os.getpgid(up.popen.pid)
        servers = [p for p in processes_of(data) if p.name() == "postgres"]
        servers += [p for p in psutil.Process(up.popen.pid).children() if p.name().startswith("valkey")]
        assert {p.name().split("-")[0] for p in servers} == {"valkey", "postgres"}
        assert [p.name() for p in servers if os.getpgid(p.pid) == group] == []
        os.killpg(group, signal.SIGINT)
        assert up.popen.wait(timeout=30) == 0
        assert "CallerSync stopped" in up.output() and "Traceback" not in up.output()
        assert wait_gone(data, 20) == []
        assert not any(port_open(p) for p in ports.values())
        valkey_log = (data / "valkey" / "valkey.log").read_text()
        assert "Received SIGTERM" in valkey_log and "Received SIGINT" not in valkey_log
    finally:
        up.kill()


def test_a_killed_service_is_restarted_and_a_killed_up_leaves_nothing_behind(tmp_path):
    env, ports = stack_env()
    data = (tmp_path / ".callersync").resolve()
    up = Process("up", "--data-dir", str(data), env=env)
    try:
        up.wait_for("CallerSync is up", timeout=120)
        state = json.loads((data / "stack.json").read_text())
        assert state["pid"] == up.popen.pid and state["targets"]["wallet"] == f"127.0.0.1:{ports['wallet']}"

        # Process titles tell this stack's wallet from any other's.
        wallets = [p for p in processes_of(data) if " ".join(p.cmdline()).startswith("callersync wallet")]
        assert [" ".join(p.cmdline()) for p in wallets] == [f"callersync wallet :{ports['wallet']} data={data}"]

        # A second `up` on the same data dir (on free ports) is refused before it touches anything.
        env2, _ = stack_env()
        second = run_cli("up", "--data-dir", str(data), env=env2, timeout=60)
        assert second.returncode == 1
        assert f"another `callersync up` (pid {up.popen.pid}) is running with the data dir {data}" in second.stderr
        assert json.loads((data / "stack.json").read_text())["pid"] == up.popen.pid

        # The commands find the stack from its data dir, here from a subdirectory, with no URL configured.
        sub = tmp_path / "somewhere" / "deeper"
        sub.mkdir(parents=True)
        plain = callersync_env()
        for command, expected in (("reconcile", "reconcile: ok"), ("migrate", "migrations applied")):
            done = run_cli(command, env=plain, cwd=sub)
            assert done.returncode == 0, done.stderr
            assert expected in done.stdout
        operator = run_cli("token", "--role", "operator", env=plain, cwd=sub)
        contractor = run_cli("token", "--role", "contractor", "--contractor-id", "ctr-42", env=plain, cwd=sub)
        assert operator.returncode == 0 and contractor.returncode == 0, operator.stderr + contractor.stderr
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        assert http_get(f"{gateway}/v1/rateCard", operator.stdout.strip())[0] == 200
        status, body = http_get(f"{gateway}/v1/wallets/ctr-42", contractor.stdout.strip())
        assert (status, body["code"]) == (404, 5)  # accepted, and no wallet yet: not a 401
        assert http_get(f"{gateway}/v1/wallets/ctr-7", contractor.stdout.strip())[0] == 403

        # SIGKILL of the wallet: logged, restarted, serving again; the rest untouched.
        wallets[0].kill()
        up.wait_for("wallet restarted", timeout=20)
        end = time.monotonic() + 30
        while not healthy(ports["wallet"]) and time.monotonic() < end:
            time.sleep(0.2)
        assert healthy(ports["wallet"])
        assert "killed by SIGKILL" in up.output()
        assert up.popen.poll() is None

        # SIGKILL of `up` itself: its services die with it, and the watchdog stops PostgreSQL and Valkey.
        valkeys = [c for c in psutil.Process(up.popen.pid).children() if c.name().startswith("valkey")]
        assert len(valkeys) == 1
        up.popen.kill()
        up.popen.wait()
        assert wait_gone(data, 20) == []
        assert not any(port_open(p) for p in ports.values())
        end = time.monotonic() + 10
        while valkeys[0].is_running() and valkeys[0].status() != psutil.STATUS_ZOMBIE and time.monotonic() < end:
            time.sleep(0.1)
        assert not valkeys[0].is_running() or valkeys[0].status() == psutil.STATUS_ZOMBIE
        assert not (data / "postgres" / "postmaster.pid").exists()

        # The stack.json left behind names a dead pid: the commands say so (exit 2), and a new `up` starts.
        done = run_cli("reconcile", env=plain, cwd=sub)
        assert done.returncode == 2 and "is not running" in done.stderr
        again = Process("up", "--data-dir", str(data), env=env)
        try:
            again.wait_for("CallerSync is up", timeout=120)
            again.popen.send_signal(signal.SIGTERM)
            assert again.popen.wait(timeout=20) == 0
            # ...and stops its PostgreSQL, though the killed `up` never let go of it.
            assert wait_gone(data, 20) == []
            assert not (data / "postgres" / "postmaster.pid").exists()
        finally:
            again.kill()
    finally:
        up.kill()


def test_commands_without_a_stack_say_they_could_not_check(tmp_path):
    plain = callersync_env()
    done = run_cli("reconcile", env=plain, cwd=tmp_path)
    assert done.returncode == 2 and "could not check" in done.stderr and "callersync up" in done.stderr
    assert run_cli("migrate", env=plain, cwd=tmp_path).returncode == 2
    unreachable = run_cli("reconcile", env=callersync_env(
        CALLERSYNC_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none"), cwd=tmp_path)
    assert unreachable.returncode == 2 and "cannot connect" in unreachable.stderr

    no_id = run_cli("token", "--role", "contractor", env=callersync_env(CALLERSYNC_JWT_SECRET="k"), cwd=tmp_path)
    assert no_id.returncode == 2 and "--contractor-id" in no_id.stderr and no_id.stdout == ""
    no_key = run_cli("token", "--role", "operator", env=plain, cwd=tmp_path)
    assert no_key.returncode == 2 and "no key to sign with" in no_key.stderr
    assert not (tmp_path / ".callersync").exists()  # never creates a key the gateway does not have

    version = run_cli("--version", env=plain, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("callersync ")
    from services.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"up", "certs", "serve", "migrate", "reconcile", "token", "demo", "bench"} <= set(subcommands)
    for command in subcommands:
        helped = run_cli(command, "--help", env=plain, cwd=tmp_path)
        assert helped.returncode == 0
        description = helped.stdout.split("\n\n")[1]
        assert description.strip() and not description.startswith(("options:", "positional")), command
        # Every argument says what it is for (without help, argparse prints a bare name).
        bare = [action.dest for action in subcommands[command]._actions if not action.help]
        assert bare == [], f"{command}: {bare}"
    assert "(default: 3600)" in run_cli("token", "--help", env=plain, cwd=tmp_path).stdout


async def test_a_service_whose_port_is_taken_says_so_in_one_line():
    """grpc raised `RuntimeError: Failed to bind` with a C-core trace; `serve` now exits with one line."""
    from services.runtime.server import GrpcServer

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = GrpcServer("wallet", "callersync.wallet.v1.WalletService", lambda _: None,
                            host="127.0.0.1", port=port)
        with pytest.raises(SystemExit, match=f"wallet: cannot listen on 127.0.0.1:{port}"):
            await server.start()


def test_a_database_that_does_not_answer_fails_the_start_in_one_line(tmp_path):
    env, ports = stack_env(CALLERSYNC_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    up = Process("up", "--data-dir", str(tmp_path / "data"), env=env)
    try:
        assert up.popen.wait(timeout=60) == 1
    finally:
        up.kill()
    out = up.output()
    assert "callersync up: could not start:" in out and "Traceback" not in out, out
    assert "CallerSync stopped" in out
    assert wait_gone((tmp_path / "data").resolve(), 10) == []
