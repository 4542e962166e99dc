"""Assembles the routing server: pool, Redis, wallet and billing channels, the cache, the consumers of
callersync.billing.events and of routing's own step stream, the pause-threshold relay, the servicer."""

from __future__ import annotations

import pathlib

from callersync.billing.v1 import billing_pb2_grpc
from callersync.routing.v1 import routing_pb2, routing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2_grpc
from services.routing import billing_events, clients, step_log
from services.routing.access import ACCESS
from services.routing.blocklist import Blocklist
from services.routing.claim_desk import ClaimDesk
from services.routing.config import RoutingConfig
from services.routing.directory import Directory, announce
from services.routing.live_state import STEPS_STREAM, Change, LiveState
from services.routing.profile_desk import ProfileDesk
from services.routing.rate_card import RateCard
from services.routing.router import Router
from services.routing.servicer import RoutingServicer
from services.routing.storage import SCHEMA, RoutingStore
from services.routing.streams import StreamConsumer
from services.routing.thresholds import ThresholdRelay
from services.runtime.assembly import Plumbing
from services.runtime.channels import client_channel
from services.runtime.config import Settings
from services.runtime.server import GrpcServer
from services.runtime.service import ServiceDef

SERVICE_NAME = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name
# Billing's rate card is asked while a ClaimZip waits; the pause-threshold pushes and the replay request are
# background work, retried, and may wait longer.
RATE_CARD_TIMEOUT_S = 2.0
BACKGROUND_TIMEOUT_S = 5.0


async def build(settings: Settings, port: int, config: RoutingConfig | None = None) -> GrpcServer:
    config = config or RoutingConfig.from_env()
    base = await Plumbing.open(settings, redis_connections=64)
    pool, redis_client, pipe = base.pool, base.redis, base.pipe  # the pipe: the hot path's scripts
    wallet_channel = client_channel(settings.target_of_wallet(), "routing", settings)
    billing_channel = client_channel(settings.target_of("billing"), "routing", settings)
    wallet = wallet_pb2_grpc.WalletServiceStub(wallet_channel)
    store = RoutingStore(pool)
    directory = Directory(store)
    live = LiveState(redis_client, pipe, burst_window_s=config.burst_window_s, session_ttl_s=config.session_ttl_s,
                     slot_ttl_s=config.live_slot_ttl_s)
    thresholds = ThresholdRelay(store, clients.WalletClient(wallet, BACKGROUND_TIMEOUT_S), settings.outbox_poll_ms)

    async def rates_re_read() -> None:  # what a rate event does (billing_events), for the whole card at once
        thresholds.nudge()
        await announce(directory, live, Change(every_zip=True))

    billing_stub = billing_pb2_grpc.BillingServiceStub(billing_channel)
    rate_card = RateCard(store, clients.BillingClient(billing_stub, RATE_CARD_TIMEOUT_S), on_resync=rates_re_read)
    replay = billing_events.EventReplay(store, clients.BillingClient(billing_stub, BACKGROUND_TIMEOUT_S))

    def stream_lost() -> None:  # or never existed: events billing published before may be gone with it
        rate_card.start_resync()
        replay.start()

    events = StreamConsumer(
        redis_client, billing_events.STREAM, billing_events.GROUP,
        billing_events.BillingEventHandler(store, live, directory, thresholds.nudge),
        claim_idle_ms=config.claim_idle_ms, on_group_created=stream_lost)
    steps = StreamConsumer(redis_client, STEPS_STREAM, step_log.GROUP, step_log.StepWriter(store),
                           claim_idle_ms=config.claim_idle_ms, linger_ms=config.step_linger_ms)
    thresholds.start()
    events.start()
    steps.start()
    router = Router(directory, live, clients.WalletClient(wallet, config.wallet_timeout_s), config, store)
    servicer = RoutingServicer(
        store, router, ClaimDesk(store, directory, live, rate_card, thresholds, config.max_backups),
        ProfileDesk(store, directory, live, thresholds), Blocklist(store, directory, live))

    async def close_channels() -> None:
        await wallet_channel.close()
        await billing_channel.close()

    # Newest first: stop the consumers and the relay, then the channels and pools they use.
    return base.server("routing", SERVICE_NAME,
                       lambda s: routing_pb2_grpc.add_RoutingServiceServicer_to_server(servicer, s), port, ACCESS,
                       [close_channels, thresholds.stop, rate_card.stop, replay.stop, events.stop, steps.stop])


ROUTING = ServiceDef("routing", SCHEMA, pathlib.Path(__file__).parent / "migrations", build)
