"""Routing's re-read of billing's rate card while billing is down: retried with a doubling wait, capped, so a
long outage is asked about once a minute, not every two seconds."""

import asyncio
import logging
import re

import grpc

from bench.common import free_port
from callersync.billing.v1 import billing_pb2_grpc
from services.routing.clients import BillingClient
from services.routing.rate_card import RateCard
from services.routing.storage import RoutingStore


async def test_the_re_read_retries_with_a_doubling_wait_up_to_the_cap(db, caplog):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as nobody:  # billing is down
        billing = BillingClient(billing_pb2_grpc.BillingServiceStub(nobody), timeout_s=0.5)
        card = RateCard(RoutingStore(db), billing, retry_s=0.05, max_retry_s=0.2)
        with caplog.at_level(logging.WARNING, logger="callersync.routing.rate_card"):
            card.start_resync()
            for _ in range(100):
                await asyncio.sleep(0.05)
                if len(caplog.records) >= 5:
                    break
            await card.stop()
    waits = [float(re.search(r"retrying in ([\d.]+) s", r.getMessage()).group(1)) for r in caplog.records]
    assert waits[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert "failed (" in caplog.records[0].getMessage()
