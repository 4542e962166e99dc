"""Bytes that are not a valid request message get INVALID_ARGUMENT, not INTERNAL, and touch nothing."""

import grpc
import pytest

MALFORMED = {
    "invalid UTF-8 in a string field": b"\x0a\x03\xff\xfe\xfd",
    "a length running past the end": b"\x0a\x7fabc",
    "a truncated varint": b"\x10\xff\xff",
}


@pytest.mark.parametrize("name", MALFORMED)
async def test_a_malformed_message_is_invalid_argument(wallet_target, name):
    async with grpc.aio.insecure_channel(wallet_target) as channel:
        call = channel.unary_unary(
            "/callersync.wallet.v1.WalletService/TopUp",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(MALFORMED[name])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid TopUp message" in info.value.details()
