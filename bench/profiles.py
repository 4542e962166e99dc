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
import datetime as dt
import ipaddress
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

import grpc

from bench import common

SAMPLE_RATIO = 0.1  # OTEL_TRACES_SAMPLER_ARG: see docs/performance.md, "Sampling in a deployment"
TRUST_DOMAIN = "callersync.local"
# Every identity a bench phase needs: the services, and the callers the bench's clients stand in for.
IDENTITIES = ("wallet", "billing", "routing", "gateway", "routing-engine", "operator", "echo")


def spiffe_id(identity: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{identity}"


def make_certificates(directory: pathlib.Path, identities: Sequence[str] = IDENTITIES) -> pathlib.Path:
    """A CA and, per identity, a key and a certificate usable as server and client (SAN: the identity's SPIFFE
    URI, localhost and 127.0.0.1): <identity>.pem / <identity>.key / ca.pem in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callersync bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for identity in identities:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.UniformResourceIdentifier(spiffe_id(identity)), x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        (directory / f"{identity}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{identity}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
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
        d = pathlib.Path(self.cert_dir)
        return {
            "CALLERSYNC_TLS_CERT_FILE": str(d / f"{service}.pem"), "CALLERSYNC_TLS_KEY_FILE": str(d / f"{service}.key"),
            "CALLERSYNC_TLS_CA_FILE": str(d / "ca.pem"),
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
        d = pathlib.Path(self.cert_dir)
        return grpc.ssl_channel_credentials(root_certificates=(d / "ca.pem").read_bytes(),
                                            private_key=(d / f"{identity}.key").read_bytes(),
                                            certificate_chain=(d / f"{identity}.pem").read_bytes())

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
        sink.terminate()
        try:
            sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
        shutil.rmtree(work, ignore_errors=True)
