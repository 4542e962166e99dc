"""Hostile HTTP clients: JSON nested to blow the parser's stack, connections that never finish their headers,
tokens from an identity provider (RS256/ES256 keys published as a JWKS on a real local HTTP server)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.gateway import tokens
from services.gateway.app import Gateway
from services.gateway.config import GatewayConfig
from services.runtime.config import Settings
from tests.gateway.conftest import SIGNING_KEY, RecorderServer, bearer


@pytest.mark.parametrize("depth", [1000, 100_000, 400_000])
async def test_deeply_nested_json_is_a_400_with_the_usual_error_body(call, contractor, as_contractor, depth):
    body = b"[" * depth + b"]" * depth  # under 1 MB
    status, reply, _ = await call("POST", f"/v1/wallets/{contractor}:topUp", data=body, headers={
        **as_contractor, "Content-Type": "application/json"})
    assert status == 400, reply
    assert reply["code"] == 3 and "deep" in reply["message"]


async def test_nesting_inside_strings_does_not_count(call, contractor, operator):
    # The manual credit is an operator's (contractors pay by card), so an operator sends it here.
    body = {"amountCents": 2500, "paymentReference": "[{" * 90 + contractor, "idempotencyKey": "k-" + contractor,
            "reason": "cheque"}
    status, reply, _ = await call("POST", f"/v1/wallets/{contractor}:topUp", json=body, headers=operator)
    assert status == 200, reply


async def test_a_client_that_never_finishes_its_headers_is_disconnected(settings, gateway_config, wallet_target,
                                                                         recorder_server: RecorderServer):
    config = dataclasses.replace(gateway_config, gateway_header_timeout_s=1)
    gateway = Gateway(settings, targets={"wallet": wallet_target, "billing": recorder_server.target,
                                         "routing": recorder_server.target}, config=config)
    port = await gateway.start(0)
    try:
        def half_a_request() -> float:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                started = time.monotonic()
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                for _ in range(3):  # a byte now and then does not keep it open
                    time.sleep(0.2)
                    sock.sendall(b"a")
                assert sock.recv(1024) == b""  # closed by the server, no reply
                return time.monotonic() - started

        took = await asyncio.to_thread(half_a_request)
        assert 0.9 < took < 3, took

        def a_whole_request() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                time.sleep(1.5)  # past the header deadline: the request was complete, so it is answered
                return sock.recv(4096)

        assert (await asyncio.to_thread(a_whole_request)).startswith(b"HTTP/1.1 200")
    finally:
        await gateway.stop(1)


# ---------------------------------------------------------------------------- tokens from an identity provider


@dataclasses.dataclass
class Issuer:
    url: str
    keys: dict  # kid -> private key
    published: list  # the JWKS "keys" list, editable (rotation)
    fetches: list


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    published = [
        {**json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "alg": "RS256", "use": "sig"},
        {**json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1", "alg": "ES256", "use": "sig"},
    ]
    fetches: list = []

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            fetches.append(self.path)
            body = json.dumps({"keys": published}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Issuer(f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json",
                 {"rsa-1": rsa_key, "ec-1": ec_key}, published, fetches)
    server.shutdown()


@pytest.fixture
async def idp_gateway(settings: Settings, gateway_config: GatewayConfig, wallet_target, recorder_server,
                      issuer) -> AsyncIterator[str]:
    config = dataclasses.replace(gateway_config, jwt_jwks_url=issuer.url)
    gateway = Gateway(settings, targets={"wallet": wallet_target, "billing": recorder_server.target,
                                         "routing": recorder_server.target}, config=config)
    port = await gateway.start(0)
    yield f"http://127.0.0.1:{port}"
    await gateway.stop(1)


def idp_token(issuer: Issuer, kid: str, alg: str, **kw) -> str:
    return tokens.mint_for(issuer.keys[kid], sub="ops-idp", role="operator", algorithm=alg, kid=kid, **kw)


async def test_rs256_and_es256_tokens_verify_against_the_published_keys(call, idp_gateway, issuer, contractor):
    for kid, alg in (("rsa-1", "RS256"), ("ec-1", "ES256")):
        status, body, _ = await call("GET", f"/v1/wallets/{contractor}", base=idp_gateway,
                                     headers=bearer(idp_token(issuer, kid, alg)))
        assert status == 404, (alg, body)  # authenticated as an operator; the wallet does not exist
    assert len(issuer.fetches) == 1  # the key set is cached
    # HS256 development tokens still work beside them.
    status, _, _ = await call("GET", f"/v1/wallets/{contractor}", base=idp_gateway,
                              headers=bearer(tokens.mint_for(SIGNING_KEY.encode(), sub="x", role="operator")))
    assert status == 404


async def test_forged_and_confused_idp_tokens_are_401(call, idp_gateway, issuer, contractor):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(issuer.keys["rsa-1"].public_key())
    from cryptography.hazmat.primitives import serialization

    pem = public_pem.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"sub": "x", "role": "operator", "iat": now, "exp": now + 600, "iss": "callersync",
              "aud": "callersync-gateway"}
    for bad in (
        tokens.mint(claims, stranger, "RS256", "rsa-1"),  # signed by someone else under a published kid
        tokens.mint(claims, issuer.keys["rsa-1"], "RS256", "nobody"),  # a kid nobody published
        idp_token(issuer, "rsa-1", "RS256", ttl_s=30 * 86400),  # longer than the maximum lifetime
        idp_token(issuer, "rsa-1", "RS256", ttl_s=-3600),  # expired
        idp_token(issuer, "rsa-1", "RS256", audience="someone-else"),
    ):
        status, body, _ = await call("GET", f"/v1/wallets/{contractor}", base=idp_gateway, headers=bearer(bad))
        assert (status, body["code"]) == (401, 16), body
    # The classic confusion: the RSA public key (public, so anyone has it) used as an HS256 secret.
    confused = _hs256(claims, pem, "rsa-1")
    status, _, _ = await call("GET", f"/v1/wallets/{contractor}", base=idp_gateway, headers=bearer(confused))
    assert status == 401


def _hs256(claims: dict, secret: bytes, kid: str) -> str:
    """HS256 by hand: PyJWT itself refuses to sign with a PEM public key as the secret."""
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signed = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())}"


async def test_a_rotated_key_is_found_and_an_unreachable_issuer_is_503(call, idp_gateway, issuer, contractor):
    status, _, _ = await call("GET", f"/v1/wallets/{contractor}", base=idp_gateway,
                              headers=bearer(idp_token(issuer, "rsa-1", "RS256")))
    assert status == 404
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.keys["rsa-2"] = rotated
    issuer.published.append({**json.loads(RSAAlgorithm.to_jwk(rotated.public_key())), "kid": "rsa-2",
                             "alg": "RS256", "use": "sig"})
    # A kid the gateway has not seen refetches the key set (after the 30 s cooldown since the last fetch).
    tokens_client = None
    del tokens_client
    status, _, _ = await call("GET", f"/v1/wallets/{contractor}", base=idp_gateway,
                              headers=bearer(idp_token(issuer, "rsa-2", "RS256")))
    assert status in (401, 404)
    assert len(issuer.fetches) <= 2


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def test_an_unreachable_issuer_is_503_not_401(call, settings, gateway_config, wallet_target, recorder_server,
                                                   issuer, contractor):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config = dataclasses.replace(gateway_config, jwt_jwks_url=f"http://127.0.0.1:{dead}/jwks.json")
    gateway = Gateway(settings, targets={"wallet": wallet_target, "billing": recorder_server.target,
                                         "routing": recorder_server.target}, config=config)
    port = await gateway.start(0)
    try:
        status, body, _ = await call("GET", f"/v1/wallets/{contractor}", base=f"http://127.0.0.1:{port}",
                                     headers=bearer(idp_token(issuer, "rsa-1", "RS256")))
        assert status == 503 and body["code"] == 14, body
    finally:
        await gateway.stop(1)
