"""`callersync up` on a machine with nothing configured: embedded PostgreSQL and Valkey, every service
healthy and discoverable by reflection, and everything stopped cleanly on SIGTERM within 15 s."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port
from tests.system.processes import Process, callersync_env

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "wallet": "callersync.wallet.v1.WalletService",
    "billing": "callersync.billing.v1.BillingService",
    "routing": "callersync.routing.v1.RoutingService",
}


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    return subprocess.run([binary, "-plaintext", *args], capture_output=True, text=True, timeout=30)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def problems_logged(output: str) -> list[str]:
    """Lines at WARNING or above, from the JSON log lines and from anything printed plain."""
    found = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                found.append(line)
        elif any(word in line for word in ("WARNING", "ERROR", "CRITICAL", "Traceback")):
            found.append(line)
    return found


def migrations_logged(output: str) -> dict[str, int]:
    """How many times `up`'s output says each migration file was applied, for every file there is."""
    from services.runtime.db import REPEATABLE, migration_files

    counts = {}
    for name in SERVICES:
        folder = ROOT / "services" / name / "migrations"
        for path in migration_files(folder):
            counts[f"{name}/{path.name}"] = output.count(f"applied migration {name}/{path.name}")
        if (folder / REPEATABLE).exists():
            counts[f"{name}/{REPEATABLE}"] = output.count(f"applied {name}/{REPEATABLE}")
    return counts


def test_up_runs_everything_embedded_and_stops_on_sigterm(tmp_path):
    ports = {name: free_port() for name in SERVICES}
    env = callersync_env(
        **{f"CALLERSYNC_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        CALLERSYNC_GATEWAY_PORT=str(free_port()),
    )
    up = Process("up", "--data-dir", str(tmp_path / "data"), env=env)
    try:
        up.wait_for("CallerSync is up", timeout=120)
        assert "PostgreSQL (embedded)" in up.output() and "Valkey (embedded)" in up.output()
        # A fresh start says nothing alarming, and applies (and logs) every migration once.
        started = up.output()
        assert problems_logged(started) == []
        counts = migrations_logged(started)
        assert counts and set(counts.values()) == {1}, counts
        for name, port in ports.items():
            assert f"{name} 127.0.0.1:{port}" in up.output()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICES[name]), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            listed = grpcurl(f"127.0.0.1:{port}", "list")
            assert listed.returncode == 0, listed.stderr
            assert SERVICES[name] in listed.stdout and "grpc.health.v1.Health" in listed.stdout

        wallet = f"127.0.0.1:{ports['wallet']}"
        top_up = grpcurl("-d", json.dumps({"contractor_id": "ctr-up", "amount_cents": 5000, "reason": "welcome credit",
                                           "payment_reference": "pay-1", "idempotency_key": "up-1"}),
                         wallet, "callersync.wallet.v1.WalletService/TopUp")
        assert top_up.returncode == 0, top_up.stderr
        refused = grpcurl("-d", json.dumps({"contractor_id": "ctr-up", "amount_cents": 100, "reason": "typo",
                                            "payment_reference": "p", "idempotency_key": "up-2"}),
                          wallet, "callersync.wallet.v1.WalletService/TopUp")
        assert "InvalidArgument" in refused.stderr and "at least 2500" in refused.stderr
        # Without a Stripe key, payments are simulated by localstripe: a card top-up starts against it.
        assert "Payments are SIMULATED" in up.output()
        state = json.loads((tmp_path / "data" / "stack.json").read_text())  # for `callersync demo` and reconcile
        assert state["payments"]["simulated"] and state["payments"]["api_base"].startswith("http://127.0.0.1:")
        card = grpcurl("-d", json.dumps({"contractor_id": "ctr-up", "amount_cents": 2500, "idempotency_key": "up-3"}),
                       wallet, "callersync.wallet.v1.WalletService/StartTopUp")
        assert card.returncode == 0, card.stderr
        reply = json.loads(card.stdout)
        assert (reply.get("clientSecret") or reply.get("client_secret", "")).startswith("pi_"), card.stdout

        started = time.monotonic()
        up.popen.send_signal(signal.SIGTERM)
        assert up.popen.wait(timeout=15) == 0
        assert time.monotonic() - started < 15
        assert "CallerSync stopped" in up.output()
        assert not any(port_open(p) for p in ports.values())
    finally:
        up.kill()


def test_up_with_mutual_tls_gives_each_service_its_own_certificate(tmp_path):
    """`up --tls`: development certificates per identity in <data dir>/certs, every service serving mutual TLS
    and calling the others with its own certificate; an operator's grpcurl with the printed flags lists and tops
    up; a plaintext client is refused."""
    ports = {name: free_port() for name in SERVICES}
    env = callersync_env(
        **{f"CALLERSYNC_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        CALLERSYNC_GATEWAY_PORT=str(free_port()),
    )
    up = Process("up", "--tls", "--data-dir", str(tmp_path / "data"), env=env)
    try:
        up.wait_for("CallerSync is up", timeout=120)
        pki = tmp_path / "data" / "certs"
        flags = ["-cacert", str(pki / "ca.pem"), "-cert", str(pki / "operator-oncall.pem"),
                 "-key", str(pki / "operator-oncall-key.pem")]
        assert " ".join(flags) in up.output()
        assert f"--engine-cert {pki / 'routing-engine.pem'}" in up.output()
        wallet = f"127.0.0.1:{ports['wallet']}"
        binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
        listed = subprocess.run([binary, *flags, wallet, "list"], capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0 and SERVICES["wallet"] in listed.stdout, listed.stderr
        top_up = subprocess.run(
            [binary, *flags, "-d", json.dumps({"contractor_id": "ctr-tls", "amount_cents": 5000,
                                               "payment_reference": "pay-1", "idempotency_key": "tls-1",
                                               "reason": "welcome credit"}),
             wallet, "callersync.wallet.v1.WalletService/TopUp"], capture_output=True, text=True, timeout=30)
        assert top_up.returncode == 0, top_up.stderr
        reserve = subprocess.run(
            [binary, *flags, "-d", json.dumps({"contractor_id": "ctr-tls", "call_id": "c", "amount_cents": 100}),
             wallet, "callersync.wallet.v1.WalletService/Reserve"], capture_output=True, text=True, timeout=30)
        assert "PermissionDenied" in reserve.stderr and "operator/oncall may not call" in reserve.stderr
        assert grpcurl(wallet, "list").returncode != 0  # plaintext
        up.popen.send_signal(signal.SIGTERM)
        assert up.popen.wait(timeout=15) == 0
    finally:
        up.kill()


def test_up_refuses_one_certificate_for_every_service(tmp_path):
    env = callersync_env(CALLERSYNC_TLS_CERT_FILE="/x.pem", CALLERSYNC_TLS_KEY_FILE="/x-key.pem")
    done = subprocess.run([sys.executable, "-m", "services.cli", "up", "--data-dir", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "callersync up --tls" in done.stderr
