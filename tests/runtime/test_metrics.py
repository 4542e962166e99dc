"""The metrics an operator watches: latency per method and status, money moved, outbox lag, paused count."""

import asyncio

import grpc
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from callersync.wallet.v1 import wallet_pb2 as pb
from services.wallet.app import WALLET
from services.wallet.gauges import PausedContractors
from services.wallet.storage import WalletStore
from tests.wallet.support import charge, top_up


@pytest.fixture(scope="module")
def reader():
    """The process's meter provider (settable once) with an in-memory reader."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def points(reader, name):
    data = reader.get_metrics_data()
    found = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    found += list(metric.data.data_points)
    return found


async def test_wallet_metrics_record_latency_money_lag_and_pauses(reader, settings, contractor):
    server = await WALLET.build(settings, 0)  # built after the provider is set, so its instruments report
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            from callersync.wallet.v1 import wallet_pb2_grpc

            wallet = wallet_pb2_grpc.WalletServiceStub(channel)
            await wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor, threshold_cents=4000))
            await top_up(wallet, contractor, 5000)
            await charge(wallet, contractor, 2000)  # crosses the threshold: paused, an outbox event
            with pytest.raises(grpc.aio.AioRpcError):
                await top_up(wallet, contractor, 1)
            await asyncio.sleep(0.5)  # the relay publishes the pause event
    finally:
        await server.stop(1)

    latency = {(p.attributes["rpc.method"], p.attributes["rpc.status"]): p.count
               for p in points(reader, "rpc.server.duration")}
    assert latency[("/callersync.wallet.v1.WalletService/TopUp", "OK")] >= 1
    assert latency[("/callersync.wallet.v1.WalletService/TopUp", "INVALID_ARGUMENT")] >= 1
    moved = {p.attributes["kind"]: p.value for p in points(reader, "wallet.money_moved")}
    assert moved["top_up"] >= 5000 and moved["charge"] >= 2000
    lag = [p for p in points(reader, "outbox.lag") if p.attributes["topic"] == "wallet.pause_changed"]
    assert lag and lag[0].count >= 1


async def test_the_paused_gauge_counts_paused_wallets(reader, wallet, db, contractor):
    await wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor, threshold_cents=4000))
    gauge = PausedContractors(WalletStore(db).count_paused)
    expected = await db.fetchval("SELECT count(*) FROM wallet.wallets WHERE paused")
    assert expected >= 1
    assert await gauge.refresh() == expected
    assert expected in [p.value for p in points(reader, "wallet.paused_contractors")]
