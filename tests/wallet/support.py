"""Small helpers the wallet tests share: moving money through the real service and reading the ledger."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest

from callersync.wallet.v1 import wallet_pb2 as pb


async def top_up(wallet, contractor_id: str, cents: int, key: str | None = None) -> pb.TopUpResponse:
    key = key or uuid.uuid4().hex
    return await wallet.TopUp(
        pb.TopUpRequest(reason="operator credit", contractor_id=contractor_id, amount_cents=cents,
                        payment_reference=f"pay-{key}", idempotency_key=key)
    )


async def charge(wallet, contractor_id: str, cents: int, key: str | None = None) -> pb.ChargeResponse:
    return await wallet.Charge(
        pb.ChargeRequest(contractor_id=contractor_id, amount_cents=cents, idempotency_key=key or uuid.uuid4().hex,
                         reference="booking")
    )


async def balance(wallet, contractor_id: str) -> pb.Wallet:
    return (await wallet.GetWallet(pb.GetWalletRequest(contractor_id=contractor_id))).wallet


async def expect_error(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    assert info.value.details(), "every refusal carries a message a person can act on"
    return info.value


async def ledger(db: asyncpg.Pool, contractor_id: str) -> tuple[int, int, int]:
    """(stored balance, number of entries, sum of entries) as PostgreSQL holds them."""
    row = await db.fetchrow(
        "SELECT (SELECT balance_cents FROM wallet.wallets WHERE contractor_id = $1) AS balance,"
        " count(*) AS n, coalesce(sum(amount_cents), 0)::bigint AS total"
        " FROM wallet.entries WHERE contractor_id = $1",
        contractor_id,
    )
    return row["balance"], row["n"], row["total"]
