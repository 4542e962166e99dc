"""TLS and mutual TLS between services, from the certificate paths in Settings."""

from __future__ import annotations

import pathlib

import grpc

from services.runtime.authz import listen_guard
from services.runtime.config import Settings
from services.runtime.server import GrpcServer


def _read(path: str, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as err:
        raise SystemExit(f"cannot read the TLS {what} {path!r}: {err.strerror}") from None


def enabled(settings: Settings) -> bool:
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise SystemExit("CALLERSYNC_TLS_CERT_FILE and CALLERSYNC_TLS_KEY_FILE must be set together")
    return bool(settings.tls_cert_file)


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """With a CA configured, clients must present a certificate it signed (mutual TLS)."""
    ca = _read(settings.tls_ca_file, "CA") if settings.tls_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key_file, "key"), _read(settings.tls_cert_file, "certificate"))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file, "CA") if settings.tls_ca_file else None,
        private_key=_read(settings.tls_key_file, "key"),
        certificate_chain=_read(settings.tls_cert_file, "certificate"),
    )



def guard_listen(settings: Settings, what: str) -> None:
    """Before anything starts: refuses to listen beyond loopback in plaintext unless CALLERSYNC_INSECURE_LISTEN=1,
    and refuses TLS without a CA (no caller could prove who it is). See authz.listen_guard."""
    listen_guard(what, settings.host, tls_on=enabled(settings), mutual=bool(settings.tls_ca_file),
                 insecure_listen=settings.insecure_listen)


def secure_server(server: GrpcServer, settings: Settings) -> None:
    """Mutual TLS and the access table when certificates are configured (after guard_listen), and the
    plaintext health-only port when CALLERSYNC_HEALTH_PORT names one."""
    if enabled(settings):
        server.use_tls(server_credentials(settings), trust_domain=settings.trust_domain)
    if settings.health_port:
        server.serve_health_on(f"{settings.host}:{settings.health_port}")
