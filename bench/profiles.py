"""The two profiles every `callersync bench` phase runs in.

- bare: no TLS, no OpenTelemetry SDK (OTEL_*_EXPORTER=none), log level WARNING: the code alone.
- production: what a deployment runs. Mutual TLS on every gRPC hop, each service with its own identity
  certificate (a SPIFFE URI SAN) from one CA, and every bench client presenting the identity of the caller it
  stands in for (billing for Charge, the routing engine for RateCalls and RouteCall, routing for Reserve);
  OpenTelemetry on with the OTLP/gRPC exporters (batch span processor, periodic metric reader) sending to a
  collector stand-in (bench/otlp_sink.py, which counts and drops); parent-based trace-id-ratio sampling at
  SAMPLE_RATIO, the setting docs/performance.md recommends to deployments; log level INFO, JSON lines written
  to a file as a container runtime would take them.

The OTLP hop itself is plaintext to a collector on loopback, as to a node-local collector agent."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

import grpc

from bench import common

SAMPLE_RATIO = 0.1  # OTEL_TRACES_SAMPLER_ARG: see docs/performance.md, "Sampling in a deployment"
# Every identity a bench phase needs: the services, and the callers the bench's clients stand in for
# (services/<service>/access.py says who may call what). The echo only needs a server certificate.
IDENTITIES = ("wallet", "billing", "routing", "gateway", "routing-engine", "operator/bench", "echo")
OPERATOR = "operator/bench"


def make_certificates(directory: pathlib.Path) -> pathlib.Path:
    """The development CA and one certificate per identity (services/runtime/certs.py, the same files
    `callersync certs` writes: <identity>.pem, <identity>-key.pem, ca.pem)."""
    from services.runtime.certs import write_dev_pki

    write_dev_pki(directory, IDENTITIES, valid_days=1)
    return directory


@dataclasses.dataclass(frozen=True)
class Profile:
    """Picklable (load generators run in spawned processes): paths and a port, no live objects."""

    name: str = "bare"
    cert_dir: str = ""  # production only
    collector_port: int = 0
    log_dir: str = ""

    @property
    def production(self) -> bool:
        return self.name == "production"

    @property
    def label(self) -> str:
        return "[production] " if self.production else ""

    def service_env(self, service: str) -> dict[str, str]:
        """Environment for a service process (`service` is its identity)."""
        if not self.production:
            return {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                    "CALLERSYNC_LOG_LEVEL": "WARNING"}
        cert, key, ca = common.cert_files(self.cert_dir, service)
        return {
            "CALLERSYNC_TLS_CERT_FILE": str(cert), "CALLERSYNC_TLS_KEY_FILE": str(key),
            "CALLERSYNC_TLS_CA_FILE": str(ca),
            "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.collector_port}",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(SAMPLE_RATIO),
            "CALLERSYNC_LOG_LEVEL": "INFO", "CALLERSYNC_LOG_FORMAT": "json",
        }

    def log_file(self, service: str) -> IO[bytes] | None:
        """Where a service's log lines go: the terminal in the bare profile (warnings only), a file here."""
        if not self.production:
            return None
        return open(pathlib.Path(self.log_dir) / f"{service}.log", "ab")  # noqa: SIM115 (the child owns it)

    def credentials(self, identity: str) -> grpc.ChannelCredentials | None:
        if not self.production:
            return None
        cert, key, ca = common.cert_files(self.cert_dir, identity)
        return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes(), private_key=key.read_bytes(),
                                            certificate_chain=cert.read_bytes())

    def channel(self, target: str, identity: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A bench client's channel, presenting `identity`'s certificate in the production profile."""
        creds = self.credentials(identity)
        if creds is None:
            return grpc.aio.insecure_channel(target, options=list(options))
        return grpc.aio.secure_channel(target, creds, options=list(options))

    def echo_args(self) -> list[str]:
        """bench/route_call.py --echo-server's TLS arguments: the echo serves mutual TLS like a service."""
        return ["--echo-tls", self.cert_dir] if self.production else []

    def telemetry_counts(self) -> dict:
        """What the collector stand-in received so far (it rewrites its counts file every half second)."""
        if not self.production:
            return {}
        time.sleep(0.6)  # a service's last export at shutdown reaches the file at the sink's next rewrite
        try:
            return json.loads((pathlib.Path(self.log_dir) / "collector.json").read_text())
        except (OSError, ValueError):
            return {}

    def log_lines(self) -> int:
        if not self.production:
            return 0
        return sum(p.read_bytes().count(b"\n") for p in pathlib.Path(self.log_dir).glob("*.log"))


BARE = Profile()


def describe(profile: Profile) -> dict:
    """The production profile's settings, for the JSON and the table."""
    env = profile.service_env("wallet")
    return {"tls": "mutual, every hop, one identity certificate per service (SPIFFE URI SAN, ECDSA P-256)",
            "traces": f"OTLP/gRPC to a collector stand-in, batch span processor, {env['OTEL_TRACES_SAMPLER']} "
                      f"{env['OTEL_TRACES_SAMPLER_ARG']}",
            "metrics": "OTLP/gRPC, periodic reader (SDK default interval)", "log_level": env["CALLERSYNC_LOG_LEVEL"],
            "summary": f"mTLS every hop; OTLP traces ({env['OTEL_TRACES_SAMPLER']} {env['OTEL_TRACES_SAMPLER_ARG']}, "
                       "batch processor) and metrics to a collector stand-in; log level INFO",
            "collector_totals": profile.telemetry_counts()}


def serve_subprocess(service: str, env: dict[str, str], port: int, profile: Profile, tree: pathlib.Path,
                     stdout: int | None = None):
    """common.serve_subprocess with the profile's environment, certificates and log file."""
    return common.serve_subprocess(service, {**profile.service_env(service), **env}, port, tree, stdout=stdout,
                                   stderr=profile.log_file(service), tls_dir=profile.cert_dir or None,
                                   identity=service)


@contextlib.contextmanager
def production() -> Iterator[Profile]:
    """Certificates, a log directory and the collector stand-in, for as long as the profile's phases run."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="callersync-bench-prod-"))
    make_certificates(work / "certs")
    port = common.free_port()
    sink = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve().parent / "otlp_sink.py"),
                             "--port", str(port), "--out", str(work / "collector.json")])
    try:
        common.wait_port(port, 30)
        yield Profile("production", str(work / "certs"), port, str(work))
    finally:
        common.stop_process(sink, 10)
        shutil.rmtree(work, ignore_errors=True)
