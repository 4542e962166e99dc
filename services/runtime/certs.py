"""A development CA and one certificate per identity, for `callersync certs`, `callersync up --tls`, tests and
benchmarks. Production certificates come from cert-manager (deploy/k8s), never from here.

Each identity's certificate names it with a SPIFFE-style URI SAN (spiffe://<trust domain>/<identity>), which is
what the servers authorize by (services/runtime/authz.py), and carries DNS:localhost, IP:127.0.0.1 and a service's
own name as DNS SANs so it also serves as a server certificate on a developer's machine and in docker compose.
Keys are ECDSA P-256: small and fast to make.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "callersync.local"
# Who gets a certificate by default: the three services, the gateway, the telephony engine and one operator.
DEFAULT_IDENTITIES = ("wallet", "billing", "routing", "gateway", "routing-engine", "operator/oncall")
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CA_FOLDER = "ca"  # with per_identity: the CA's own folder, which no identity's folder contains


@dataclasses.dataclass(frozen=True)
class Issued:
    """Where one identity's PEM files are."""

    identity: str
    uri: str
    cert_file: pathlib.Path
    key_file: pathlib.Path


@dataclasses.dataclass(frozen=True)
class DevPki:
    ca_file: pathlib.Path
    issued: dict[str, Issued]

    def __getitem__(self, identity: str) -> Issued:
        return self.issued[identity]


def file_stem(identity: str) -> str:
    """operator/alice -> operator-alice: one flat folder of files."""
    return identity.replace("/", "-")


def spiffe_uri(identity: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/{identity}"


def dns_names(identity: str) -> list[str]:
    """localhost, and a service's own name: clients verify the server by the host they dialled (`wallet:50051`
    in docker compose, 127.0.0.1 or localhost on a developer's machine)."""
    return ["localhost"] + ([identity] if "/" not in identity else [])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: pathlib.Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _load_ca(directory: pathlib.Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"{key_path} is not an EC key made by `callersync certs`")
    return x509.load_pem_x509_certificate(cert_path.read_bytes()), key


def _new_ca(directory: pathlib.Path, name: str, not_before: datetime.datetime,
            valid_days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / CA_FILE, cert.public_bytes(serialization.Encoding.PEM))
    _write(directory / CA_KEY_FILE, _key_pem(key), private=True)
    return cert, key


def _issue(directory: pathlib.Path, identity: str, trust_domain: str, ca: x509.Certificate,
           ca_key: ec.EllipticCurvePrivateKey, not_before: datetime.datetime, valid_days: int) -> Issued:
    key = _key()
    uri = spiffe_uri(identity, trust_domain)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.UniformResourceIdentifier(uri),
            *(x509.DNSName(name) for name in dns_names(identity)),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    stem = file_stem(identity)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    _write(key_file, _key_pem(key), private=True)
    return Issued(identity, uri, cert_file, key_file)


def write_dev_pki(
    directory: pathlib.Path | str,
    identities: Iterable[str] = DEFAULT_IDENTITIES,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    valid_days: int = 30,
    not_before: datetime.datetime | None = None,
    ca_name: str = "CallerSync development CA",
    per_identity: bool = False,
) -> DevPki:
    """Writes <identity>.pem and <identity>-key.pem for each identity (operator/alice -> operator-alice.pem),
    signed by the CA in `directory` (ca.pem, ca-key.pem), which is made first if it is not there yet: so a second
    call adds identities under the same CA. `not_before` in the past with a short `valid_days` makes an expired
    certificate; another directory makes another CA.

    `per_identity` writes one folder per identity instead (<stem>/ with its certificate, its key and a copy of
    ca.pem) and keeps the CA in ca/, so a container can be given exactly its own folder: never another
    identity's key, never the CA's (deploy/docker-compose.yml)."""
    folder = pathlib.Path(directory)
    ca_folder = folder / CA_FOLDER if per_identity else folder
    ca_folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - datetime.timedelta(minutes=5)  # a little slack for clocks
    loaded = _load_ca(ca_folder)
    ca, ca_key = loaded or _new_ca(ca_folder, ca_name, now - datetime.timedelta(days=1), max(valid_days, 365))
    issued = {}
    for identity in identities:
        out = folder / file_stem(identity) if per_identity else folder
        issued[identity] = _issue(out, identity, trust_domain, ca, ca_key, start, valid_days)
        if per_identity:
            _write(out / CA_FILE, ca.public_bytes(serialization.Encoding.PEM))
    return DevPki(ca_folder / CA_FILE, issued)


def tls_env(pki: DevPki, identity: str) -> dict[str, str]:
    """The CALLERSYNC_TLS_* variables that make a process present `identity`'s certificate."""
    return {
        "CALLERSYNC_TLS_CERT_FILE": str(pki[identity].cert_file),
        "CALLERSYNC_TLS_KEY_FILE": str(pki[identity].key_file),
        "CALLERSYNC_TLS_CA_FILE": str(pki.ca_file),
    }
