"""Assembles the billing server: pool, Redis, wallet channel, storage, outbox relay, sweeper, servicer."""

from __future__ import annotations

import pathlib

from callersync.billing.v1 import billing_pb2, billing_pb2_grpc
from services.billing import events
from services.billing.access import ACCESS
from services.billing.bookings import Bookings
from services.billing.call_settlement import CallSettler
from services.billing.calls_storage import ContractorCalls
from services.billing.clients import WalletClient
from services.billing.config import BillingConfig
from services.billing.rating import Rater
from services.billing.refund_credit import RefundCredit
from services.billing.refund_desk import RefundDesk
from services.billing.servicer import BillingServicer
from services.billing.storage import OUTBOX_TABLE, SCHEMA, BillingStore
from services.billing.sweeper import Sweeper
from services.runtime.assembly import Plumbing
from services.runtime.channels import client_channel
from services.runtime.config import Settings
from services.runtime.fault import FaultHook
from services.runtime.outbox import OutboxRelay, stream_publisher
from services.runtime.server import GrpcServer
from services.runtime.service import ServiceDef

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


async def build(settings: Settings, port: int, config: BillingConfig | None = None) -> GrpcServer:
    config = config or BillingConfig.from_env()
    base = await Plumbing.open(settings)
    pool = base.pool
    store = BillingStore(pool)
    relay = OutboxRelay(
        pool,
        OUTBOX_TABLE,
        {events.TOPIC: stream_publisher(base.pipe, events.EVENTS_STREAM, events.encode)},
        settings.outbox_poll_ms,
    )
    relay.start()
    wallet_target = settings.target_of_wallet()
    wallet = WalletClient(client_channel(wallet_target, "billing", settings), wallet_target)
    limits = config.fact_limits()
    fault = FaultHook(config.fault_file or None)
    calls = CallSettler(store, wallet, fault)
    bookings = Bookings(store, wallet, fault)
    credit = RefundCredit(store, wallet, fault, relay.nudge)
    sweeper = Sweeper(store, calls, bookings, credit).loop(config.settlement_sweep_interval_ms / 1000,
                                                           config.settlement_sweep_after_ms / 1000)
    sweeper.start()
    desk = RefundDesk(store, wallet, credit, config.refund_window_days, config.refund_auto_approvals_per_30d,
                      config.refund_second_approval_cents)
    rater = Rater(store, wallet, calls, relay.nudge, limits)
    servicer = BillingServicer(store, rater, bookings, desk, ContractorCalls(pool), on_event=relay.nudge,
                               limits=limits)
    return base.server("billing", SERVICE_NAME,
                       lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server), port,
                       ACCESS, [wallet.close, relay.stop, sweeper.stop])


BILLING = ServiceDef("billing", SCHEMA, pathlib.Path(__file__).parent / "migrations", build)
