"""Who may call which method: the caller's identity is the SPIFFE URI in its verified client certificate (mutual
TLS), checked against the service's access table before the handler runs.

Identities are the path of `spiffe://<trust domain>/<path>`: `wallet`, `billing`, `routing`, `gateway`,
`routing-engine` (the telephony engine), and `operator/<name>` (an on-call engineer's grpcurl), whose role is
`operator`. A table maps each method of the service to the roles that may call it; a method missing from the
table is a start-up error, so a new RPC is never open by omission.

Only with TLS: without it (`callersync up` on loopback) nobody presents a certificate and every caller on the
machine is trusted, which is why a service refuses to listen beyond loopback without TLS (`listen_guard`).
Health and reflection are registered outside the table and stay open to any caller that completed the
handshake, i.e. holds a certificate from the CA.

The check is built once per method and run by the runtime's handler wrapping (services/runtime/interceptors.py,
which a grpc.aio ServerInterceptor would rebuild on every call): after the call has its request id, before its
request is parsed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping

import grpc

from services.runtime.errors import DomainError
from services.runtime.interceptors import CallerCheck

log = logging.getLogger("callersync.authz")

# The roles a table may name.
WALLET, BILLING, ROUTING, GATEWAY, ENGINE, OPERATOR = (
    "wallet", "billing", "routing", "gateway", "routing-engine", "operator",
)
ROLES = frozenset({WALLET, BILLING, ROUTING, GATEWAY, ENGINE, OPERATOR})
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})

AccessTable = Mapping[str, frozenset[str]]


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


def role_of(path: str) -> str | None:
    """`operator/alice` -> `operator`; a service's own name -> itself; anything else -> None (no role)."""
    if path.startswith("operator/") and len(path) > len("operator/") and "/" not in path[len("operator/"):]:
        return OPERATOR
    return path if path in ROLES and path != OPERATOR else None


def identify(sans: Iterable[bytes], trust_domain: str) -> tuple[str, str | None]:
    """(what to call the peer in messages, its role or None), from the verified certificate's subject alternative
    names. The role comes from the single spiffe:// URI SAN of our trust domain; any other shape (none, several,
    another domain) has no role."""
    prefix = f"spiffe://{trust_domain}/".encode()
    uris = [san for san in sans if san.startswith(b"spiffe://")]
    if len(uris) != 1:
        named = ", ".join(u.decode(errors="replace") for u in uris) or "no spiffe:// URI SAN"
        return f"a certificate with {named}", None
    uri = uris[0].decode(errors="replace")
    if not uris[0].startswith(prefix):
        return uri, None
    return uri, role_of(uri[len(prefix):])


def check_table(service_full_name: str, method_names: Iterable[str], table: AccessTable) -> None:
    """Every method has an entry naming known roles, and the table names no method the service lacks."""
    methods = set(method_names)
    missing = sorted(methods - set(table))
    extra = sorted(set(table) - methods)
    unknown = sorted({role for roles in table.values() for role in roles} - ROLES)
    if missing or extra or unknown:
        raise ValueError(
            f"{service_full_name} access table: no entry for {missing}, entries for methods it lacks {extra}, "
            f"unknown roles {unknown}"
        )


class Gate:
    """Whether calls are checked (only under mutual TLS) and against which trust domain; remembers the identity
    of each certificate's SANs, since a connection makes many calls (2-3.5 µs a call parsed, under 1 µs
    remembered: bench/authz_overhead.py)."""

    MAX_REMEMBERED = 10_000

    def __init__(self) -> None:
        self.enforcing = False
        self.trust_domain = ""
        self._known: dict[tuple[bytes, ...], tuple[str, str | None]] = {}

    def enforce(self, trust_domain: str) -> None:
        self.enforcing = True
        self.trust_domain = trust_domain
        self._known.clear()

    def identify(self, context: grpc.aio.ServicerContext) -> tuple[str, str | None]:
        sans = tuple(context.peer_identities() or ())
        known = self._known.get(sans)
        if known is None:
            if len(self._known) >= self.MAX_REMEMBERED:
                self._known.clear()
            known = self._known[sans] = identify(sans, self.trust_domain)
        return known


def method_check(gate: Gate, method: str, allowed: frozenset[str]) -> CallerCheck:
    """Raises PermissionDenied (after logging who called what) unless the caller's role may call `method`. Run by
    the runtime's handler wrapping once the call has its request id and before the request is parsed, so a
    refusal carries the id in its reply and its log line, and is counted and traced like any other status."""
    who_may = ", ".join(sorted(allowed)) or "nobody"

    def check(context: grpc.aio.ServicerContext) -> None:
        if not gate.enforcing:
            return
        name, role = gate.identify(context)
        if role in allowed:
            return
        log.warning("permission denied: %s may not call %s (allowed: %s)", name, method, who_may,
                    extra={"identity": name, "rpc_method": method})
        raise PermissionDenied(
            f"{name} may not call {method}: it is for {who_may}. Call it with one of those identities' "
            f"certificates (spiffe://{gate.trust_domain}/<identity>); see docs/security.md",
            reason="CALLER_NOT_ALLOWED",
            identity=name,
            method=method,
        )

    return check


FORWARDED_ROLE = "x-callersync-role"
FORWARDED_SUBJECT = "x-callersync-subject"


def _spiffe_path(context: grpc.aio.ServicerContext) -> str | None:
    """The path of the caller's single spiffe:// URI ("gateway", "operator/alice"); "" for a caller without a
    certificate (plaintext on loopback, where every local caller is trusted); None for any other certificate."""
    uris = [san for san in context.peer_identities() or () if san.startswith(b"spiffe://")]
    if not uris:
        return ""
    parts = uris[0].decode(errors="replace").split("/", 3)
    return parts[3] if len(uris) == 1 and len(parts) == 4 else None


def _header(context: grpc.aio.ServicerContext, key: str) -> str:
    return next((v for k, v in context.invocation_metadata() or () if k == key and isinstance(v, str)), "")


def forwarded_role(context: grpc.aio.ServicerContext) -> str:
    """The role of the person the gateway calls for (its x-callersync-role header), or "" when the caller is not
    the gateway: under mutual TLS only the gateway's own certificate may speak for someone, so an operator's
    grpcurl cannot claim to be a contractor. Without TLS (loopback) every local caller is trusted anyway."""
    return _header(context, FORWARDED_ROLE) if _spiffe_path(context) in ("", GATEWAY) else ""


def acting_person(context: grpc.aio.ServicerContext) -> str:
    """Who makes this call, for the records of who decided: the person the gateway signed in (its
    x-callersync-subject header), or an operator's own certificate (`operator/alice`); "" when the call names
    nobody (a service, or a plaintext caller on loopback that sent no header), and the request's own field
    stands."""
    path = _spiffe_path(context)
    if path is not None and path.startswith("operator/"):
        return path
    return _header(context, FORWARDED_SUBJECT) if path in ("", GATEWAY) else ""


class Authorizer:
    """A service's access table behind its gate: the check for each method the service registers."""

    def __init__(self, gate: Gate, table: AccessTable) -> None:
        self._gate = gate
        self._table = table

    def checks(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> dict[str, CallerCheck]:
        check_table(service, handlers, self._table)
        for name, handler in handlers.items():
            if handler.unary_unary is None:
                # Fail closed: a streaming method would otherwise be registered without the check.
                raise ValueError(f"/{service}/{name}: only unary methods are authorized by services/runtime/authz.py")
        return {name: method_check(self._gate, f"/{service}/{name}", self._table[name]) for name in handlers}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen_guard(what: str, host: str, *, tls_on: bool, mutual: bool, insecure_listen: bool) -> None:
    """Secure by default: beyond loopback a service serves only mutual TLS, unless the operator said
    CALLERSYNC_INSECURE_LISTEN=1 (then a warning says who can now call it)."""
    if tls_on and not mutual:
        raise SystemExit(
            f"{what}: CALLERSYNC_TLS_CERT_FILE is set but CALLERSYNC_TLS_CA_FILE is not: without a CA no caller "
            "can prove who it is, so every call would be refused. Set CALLERSYNC_TLS_CA_FILE (mutual TLS)."
        )
    if tls_on or is_loopback(host):
        return
    if insecure_listen:
        log.warning(
            "%s listens on %s WITHOUT TLS (CALLERSYNC_INSECURE_LISTEN=1): anyone who can reach the port can call "
            "every method, including the ones that move money", what, host,
        )
        return
    raise SystemExit(
        f"{what}: refusing to listen on {host} without TLS: anyone on the network could move money. Set "
        "CALLERSYNC_TLS_CERT_FILE, CALLERSYNC_TLS_KEY_FILE and CALLERSYNC_TLS_CA_FILE (mutual TLS; "
        "`callersync certs` makes development ones), listen on 127.0.0.1, or set CALLERSYNC_INSECURE_LISTEN=1 "
        "if something else (a mesh sidecar) secures the traffic."
    )
