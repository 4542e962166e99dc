"""Mutual TLS between services through the runtime's own plumbing (Settings -> tls -> client_channel): a client
with a certificate from our CA naming an identity the wallet's table allows is served; TLS half configured is a
start-up error. Refusals of unauthenticated and unauthorized callers: tests/runtime/test_authz.py."""

import dataclasses

import grpc
import pytest

from callersync.wallet.v1 import wallet_pb2 as pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.runtime import certs, tls
from services.runtime.channels import client_channel
from services.wallet.app import WALLET


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.write_dev_pki(tmp_path_factory.mktemp("pki"), ["wallet", "billing"])


def tls_settings(settings, pki, who: str):
    return dataclasses.replace(settings, tls_cert_file=str(pki[who].cert_file), tls_key_file=str(pki[who].key_file),
                               tls_ca_file=str(pki.ca_file))


@pytest.fixture
async def mtls_wallet(settings, pki):
    wallet_settings = tls_settings(settings, pki, "wallet")
    server = await WALLET.build(wallet_settings, 0)
    tls.secure_server(server, wallet_settings)
    port = await server.start()
    yield f"localhost:{port}"
    await server.stop(1)


async def test_a_client_with_our_certificate_is_served(mtls_wallet, settings, pki, contractor):
    async with client_channel(mtls_wallet, "billing", tls_settings(settings, pki, "billing")) as channel:
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetWallet(pb.GetWalletRequest(contractor_id=contractor), timeout=5)
    # The call reached the wallet, which does not know this contractor.
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_half_configured_tls_is_a_start_up_error(settings, pki):
    with pytest.raises(SystemExit, match="must be set together"):
        tls.enabled(dataclasses.replace(settings, tls_cert_file=str(pki["wallet"].cert_file)))


def test_tls_without_a_ca_is_a_start_up_error(settings, pki):
    one_way = dataclasses.replace(tls_settings(settings, pki, "wallet"), tls_ca_file="")
    with pytest.raises(SystemExit, match="CALLERSYNC_TLS_CA_FILE is not"):
        tls.guard_listen(one_way, "wallet")
