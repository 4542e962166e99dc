"""Mutual TLS between services: a client with a certificate from our CA is served; a client without one,
or with a certificate from another CA, is refused before any call reaches the service."""

import dataclasses
import subprocess

import grpc
import pytest

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime import tls
from services.runtime.channels import client_channel
from services.wallet.app import WALLET


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)


def make_cert(folder, name: str, ca: str) -> None:
    (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=folder)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "ca")
    make_ca(folder, "rogue-ca")
    make_cert(folder, "wallet", "ca")
    make_cert(folder, "billing", "ca")
    make_cert(folder, "intruder", "rogue-ca")
    return folder


def tls_settings(settings, pki, who: str, ca: str = "ca"):
    return dataclasses.replace(settings, tls_cert_file=str(pki / f"{who}.pem"), tls_key_file=str(pki / f"{who}.key"),
                               tls_ca_file=str(pki / f"{ca}.pem"))


@pytest.fixture
async def mtls_wallet(settings, pki):
    wallet_settings = tls_settings(settings, pki, "wallet")
    server = await WALLET.build(wallet_settings, 0)
    server.use_tls(tls.server_credentials(wallet_settings))
    port = await server.start()
    yield f"localhost:{port}"
    await server.stop(1)


async def get_wallet(channel, contractor):
    stub = wallet_pb2_grpc.WalletServiceStub(channel)
    return await stub.GetWallet(pb.GetWalletRequest(contractor_id=contractor), timeout=5)


async def test_a_client_with_our_certificate_is_served(mtls_wallet, settings, pki, contractor):
    async with client_channel(mtls_wallet, "billing", tls_settings(settings, pki, "billing")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_wallet(channel, contractor)
    # The call reached the wallet, which does not know this contractor.
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_client_without_a_certificate_is_refused(mtls_wallet, pki, contractor):
    creds = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(mtls_wallet, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_wallet(channel, contractor)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_with_another_cas_certificate_is_refused(mtls_wallet, settings, pki, contractor):
    intruder = dataclasses.replace(tls_settings(settings, pki, "intruder"), tls_ca_file=str(pki / "ca.pem"))
    async with client_channel(mtls_wallet, "intruder", intruder) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_wallet(channel, contractor)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_is_refused(mtls_wallet, contractor):
    async with grpc.aio.insecure_channel(mtls_wallet) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_wallet(channel, contractor)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_half_configured_tls_is_a_start_up_error(settings, pki):
    with pytest.raises(SystemExit, match="must be set together"):
        tls.enabled(dataclasses.replace(settings, tls_cert_file=str(pki / "wallet.pem")))
