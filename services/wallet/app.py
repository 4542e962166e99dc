"""Assembles the wallet server: pool, Redis, storage, outbox relays, servicer."""

from __future__ import annotations

import pathlib

from callersync.wallet.v1 import wallet_pb2, wallet_pb2_grpc
from services.runtime.assembly import Plumbing
from services.runtime.config import Settings
from services.runtime.fault import FaultHook
from services.runtime.idempotency import IdempotencyCache
from services.runtime.outbox import OutboxRelay, stream_publisher
from services.runtime.server import GrpcServer
from services.runtime.service import ServiceDef
from services.wallet import alerts, payment_emails
from services.wallet.access import ACCESS
from services.wallet.config import WalletConfig
from services.wallet.gauges import PausedContractors
from services.wallet.payment_storage import PaymentStore
from services.wallet.payments import PaymentDesk
from services.wallet.postings import Postings
from services.wallet.provider import PaymentProvider
from services.wallet.servicer import WalletServicer
from services.wallet.settlement import CallSettlement
from services.wallet.storage import OUTBOX_TABLE, SCHEMA, WalletStore

SERVICE_NAME = wallet_pb2.DESCRIPTOR.services_by_name["WalletService"].full_name


async def build(settings: Settings, port: int, config: WalletConfig | None = None) -> GrpcServer:
    config = config or WalletConfig.from_env()
    base = await Plumbing.open(settings)
    pool, pipe = base.pool, base.pipe
    store = WalletStore(pool)
    idempotency = IdempotencyCache(pipe, "wallet", config.idempotency_retention_s)
    provider = PaymentProvider(settings.stripe_api_key, settings.stripe_api_base, config.stripe_publishable_key)
    payments = PaymentDesk(
        PaymentStore(pool), provider, dashboard_url=config.dashboard_url,
        sweep_interval_ms=config.payment_sweep_interval_ms, sweep_after_ms=config.payment_sweep_after_ms,
        retry_base_ms=config.payment_retry_base_ms, lease_ms=config.auto_top_up_lease_ms,
        fault=FaultHook(config.fault_file or None),
    )

    async def start_auto_top_ups(rows: object) -> None:
        payments.nudge_charger()  # the wallet.top_ups row written with the event is the charger's work

    events = OutboxRelay(
        pool,
        OUTBOX_TABLE,
        {
            "wallet.pause_changed": stream_publisher(pipe, alerts.EVENTS_STREAM, alerts.encode_pause),
            "wallet.auto_top_up": start_auto_top_ups,
        },
        settings.outbox_poll_ms,
    )
    # One email per transaction: a failed send must not resend the emails already accepted in its batch.
    emails = OutboxRelay(
        pool,
        OUTBOX_TABLE,
        {
            "wallet.low_balance_email": alerts.email_sender(settings.smtp_host, settings.smtp_port,
                                                            settings.smtp_sender),
            "wallet.payment_email": payment_emails.payment_email_sender(settings.smtp_host, settings.smtp_port,
                                                                        settings.smtp_sender),
        },
        settings.outbox_poll_ms,
        batch_size=1,
    )
    paused = PausedContractors(store.count_paused)
    events.start()
    emails.start()
    paused.start()
    payments.start()
    servicer = WalletServicer(store, Postings(store, idempotency), CallSettlement(store), config, payments)
    return base.server("wallet", SERVICE_NAME,
                       lambda server: wallet_pb2_grpc.add_WalletServiceServicer_to_server(servicer, server), port,
                       ACCESS, [events.stop, emails.stop, paused.stop, payments.stop])


WALLET = ServiceDef("wallet", SCHEMA, pathlib.Path(__file__).parent / "migrations", build)
