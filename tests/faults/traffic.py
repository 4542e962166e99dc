"""Call traffic that keeps going through faults: finished calls flowing the way the product works. Each call is
routed (RouteCall, then NextCandidate while candidates ring out), rated by billing with the legs the cascade
produced (billable or free), and an AI booking or a refund follows where the call earns one; top-ups arrive in
between. Every request is retried with the same ids and keys on a retryable code until it succeeds, as the
call-routing engine would. `verify` then checks the stored decisions, the ledger and the money totals."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.billing.v1 import billing_pb2_grpc
from callersync.routing.v1 import routing_pb2 as rpb
from callersync.routing.v1 import routing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.demo import scenario
from services.demo.legs import LegSpec, ai_leg, human_leg, lay_out, stamp
from services.demo.scenario import Ring

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SEED_CENTS = 1_000_000
TOP_UP_CENTS = 50_000
RPC_TIMEOUT_S = 5.0
RING_OUTCOME = {scenario.NO_ANSWER: rpb.RING_OUTCOME_NO_ANSWER, scenario.DECLINED: rpb.RING_OUTCOME_DECLINED}
# (kind, ring seconds, talk seconds); 30.000 s is billable and 29.999 s is free, so both edges are in the mix.
RINGS = (
    [(scenario.CONNECTED, 6.0, talk) for talk in (30.0, 47.2, 95.0, 312.4)]
    + [(scenario.DROPPED, 4.0, talk) for talk in (30.0, 61.5)]
    + [(scenario.SHORT, 5.0, talk) for talk in (3.0, 29.999)]
    + [(scenario.VOICEMAIL, 20.0, 25.0)]
    + [(scenario.NO_ANSWER, 20.0, 0.0)] * 4
    + [(scenario.DECLINED, 3.0, 0.0)] * 2
)


@dataclasses.dataclass
class World:
    """One test's contractors, ZIPs and claims, fresh so tests sharing a stack never see each other's money."""

    run_id: str
    humans: list[str]
    agents: list[str]
    zips: list[str]

    @property
    def contractors(self) -> list[str]:
        return self.humans + self.agents


@dataclasses.dataclass
class SentCall:
    call: bpb.FinishedCall
    decision: bpb.RatingDecision
    booking: bpb.RecordBookingRequest | None = None
    booking_fee_cents: int = 0
    refunded_cents: int = 0


@dataclasses.dataclass
class Stubs:
    wallet: wallet_pb2_grpc.WalletServiceStub
    billing: billing_pb2_grpc.BillingServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    # What only the telephony engine may call (routing and reporting calls): its own certificate under mTLS.
    engine_billing: billing_pb2_grpc.BillingServiceStub
    engine_routing: routing_pb2_grpc.RoutingServiceStub


class Channels:
    """The test plays an operator (world set-up, checks) and the telephony engine (the calls themselves)."""

    def __init__(self, stack) -> None:
        self._channels = [stack.channel(s) for s in ("wallet", "billing", "routing")] + [
            stack.channel(s, "routing-engine") for s in ("billing", "routing")
        ]
        wallet, billing, routing, engine_billing, engine_routing = self._channels
        self.stubs = Stubs(
            wallet_pb2_grpc.WalletServiceStub(wallet),
            billing_pb2_grpc.BillingServiceStub(billing),
            routing_pb2_grpc.RoutingServiceStub(routing),
            billing_pb2_grpc.BillingServiceStub(engine_billing),
            routing_pb2_grpc.RoutingServiceStub(engine_routing),
        )

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


async def unused_zip(stubs: Stubs, rng: random.Random, taken: set[str]) -> str:
    while True:
        zip_code = f"{rng.randrange(10_000, 100_000):05d}"
        if zip_code in taken:
            continue
        try:
            await stubs.billing.GetRateCard(bpb.GetRateCardRequest(zip=zip_code), timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                taken.add(zip_code)
                return zip_code
            raise


async def set_up_world(stubs: Stubs, humans: int = 5, agents: int = 2) -> World:
    """Priced ZIPs with a human primary and backups (an AI agent last on some), and funded wallets. Humans get
    enough lines that concurrent traffic is not all turned away as busy."""
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(run_id)
    world = World(
        run_id,
        [f"calls-{run_id}-h{i}" for i in range(humans)],
        [f"calls-{run_id}-ai{i}" for i in range(agents)],
        [],
    )
    for contractor in world.contractors:
        await stubs.wallet.TopUp(
            wpb.TopUpRequest(
                reason="operator credit",
                contractor_id=contractor,
                amount_cents=SEED_CENTS,
                payment_reference=f"seed-{contractor}",
                idempotency_key=f"seed-{contractor}",
            ),
            timeout=RPC_TIMEOUT_S,
        )
    for contractor in world.humans:
        await stubs.routing.SetCaps(
            rpb.SetCapsRequest(contractor_id=contractor, caps=rpb.Caps(max_concurrent_calls=50)),
            timeout=RPC_TIMEOUT_S,
        )
    for contractor in world.agents:
        await stubs.routing.SetMode(
            rpb.SetModeRequest(contractor_id=contractor, mode=rpb.CONTRACTOR_MODE_AI_AGENT),
            timeout=RPC_TIMEOUT_S,
        )
    h, a = world.humans, world.agents
    cascades = [
        [h[0], h[1], h[2], a[0]],
        [h[1], h[3], h[4], a[1 % len(a)]],
        [a[0], h[2]],
        [h[3], h[4], h[0]],
    ]
    taken: set[str] = set()
    for order in cascades:
        zip_code = await unused_zip(stubs, rng, taken)
        await stubs.billing.SetZipRate(
            bpb.SetZipRateRequest(
                zip=zip_code,
                rate_cents=rng.choice(scenario.RATES_CENTS),
                set_by=f"faults-{run_id}",
                effective_from=stamp(time.time_ns() - 7200 * 10**9),
            ),
            timeout=RPC_TIMEOUT_S,
        )
        for rank, contractor in enumerate(order):
            position = rpb.CLAIM_POSITION_PRIMARY if rank == 0 else rpb.CLAIM_POSITION_BACKUP
            await stubs.routing.ClaimZip(
                rpb.ClaimZipRequest(contractor_id=contractor, zip=zip_code, position=position),
                timeout=RPC_TIMEOUT_S,
            )
        world.zips.append(zip_code)
    return world


@dataclasses.dataclass
class Tally:
    retries: int = 0
    failed_attempts: dict[str, int] = dataclasses.field(default_factory=dict)  # "Rpc CODE" -> count
    sessions_lost: int = 0  # NextCandidate NOT_FOUND: the cascade session was gone (Redis lost it)

    def note_failure(self, rpc: str, code: grpc.StatusCode) -> None:
        name = f"{rpc} {code.name}"
        self.failed_attempts[name] = self.failed_attempts.get(name, 0) + 1
        self.retries += 1


class CallTraffic:
    """workers × calls_per_worker finished calls over the world's ZIPs; every fifth call a worker tops up."""

    def __init__(
        self,
        stubs: Stubs,
        world: World,
        workers: int = 8,
        calls_per_worker: int = 15,
        give_up_after_s: float = 60,
        also_retry: frozenset[grpc.StatusCode] = frozenset(),
    ) -> None:
        self.stubs = stubs
        # Codes retried although they should never happen, so a known bug does not hide the money checks; they
        # are still counted in the tally.
        self.retryable = RETRYABLE | also_retry
        self.world = world
        self.workers = workers
        self.calls_per_worker = calls_per_worker
        self.give_up_after_s = give_up_after_s
        self.calls: list[SentCall] = []
        self.top_ups: dict[str, tuple[str, int]] = {}  # idempotency key -> (contractor, cents)
        self.tally = Tally()
        self.rpcs_in_flight = 0
        self.calls_in_flight = 0  # cascades begun and not yet rated
        self._deadline = 0.0

    @property
    def total_calls(self) -> int:
        return self.workers * self.calls_per_worker

    async def wait_for(self, finished: int) -> None:
        while len(self.calls) < finished:
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        self._deadline = time.monotonic() + self.give_up_after_s
        await asyncio.gather(*(self._worker(w) for w in range(self.workers)))

    async def _worker(self, w: int) -> None:
        rng = random.Random(f"{self.world.run_id}-{w}")
        for i in range(self.calls_per_worker):
            if i % 5 == 4:
                await self._top_up(rng.choice(self.world.contractors), f"{self.world.run_id}-w{w}-t{i}")
            self.calls_in_flight += 1
            try:
                await self._call(rng, f"call-{self.world.run_id}-w{w}-{i}")
            finally:
                self.calls_in_flight -= 1

    async def retried(self, rpc: str, attempt: Callable[[], Awaitable]):
        """The engine's retry: the same request, same ids and keys, until it is answered."""
        while True:
            self.rpcs_in_flight += 1
            try:
                return await attempt()
            except grpc.aio.AioRpcError as err:
                if err.code() not in self.retryable or time.monotonic() > self._deadline:
                    raise
                self.tally.note_failure(rpc, err.code())
            finally:
                self.rpcs_in_flight -= 1
            await asyncio.sleep(0.05)

    async def _top_up(self, contractor: str, key: str) -> None:
        request = wpb.TopUpRequest(
            reason="operator credit",
            contractor_id=contractor,
            amount_cents=TOP_UP_CENTS,
            payment_reference=f"pay-{key}",
            idempotency_key=key,
        )
        await self.retried("TopUp", lambda: self.stubs.wallet.TopUp(request, timeout=RPC_TIMEOUT_S))
        self.top_ups[key] = (contractor, TOP_UP_CENTS)

    async def _call(self, rng: random.Random, call_id: str) -> None:
        zip_code = rng.choice(self.world.zips)
        caller = f"+1{rng.choice(('212', '415', '512', '617'))}{rng.randrange(2_000_000, 10_000_000)}"
        route = rpb.RouteCallRequest(call_id=call_id, zip=zip_code, caller_number=caller)
        reply = await self.retried(
            "RouteCall", lambda: self.stubs.engine_routing.RouteCall(route, timeout=RPC_TIMEOUT_S)
        )
        legs: list[LegSpec] = []
        booked_by = ""
        while reply.outcome == rpb.ROUTE_OUTCOME_OFFERED:
            candidate = reply.candidate
            if candidate.mode == rpb.CONTRACTOR_MODE_AI_AGENT:  # the AI always picks up
                legs.append(ai_leg(candidate.contractor_id, candidate.reservation_id, rng.uniform(60, 300)))
                booked_by = candidate.contractor_id if rng.random() < 0.6 else ""
                break
            ring = Ring(*rng.choice(RINGS))
            legs.append(human_leg(candidate.contractor_id, candidate.reservation_id, ring))
            if legs[-1].answered:
                break
            ask = rpb.NextCandidateRequest(
                call_id=call_id, after_step=candidate.step, ring_outcome=RING_OUTCOME[ring.kind]
            )
            try:
                reply = await self.retried(
                    "NextCandidate",
                    lambda ask=ask: self.stubs.engine_routing.NextCandidate(ask, timeout=RPC_TIMEOUT_S),
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                # The documented answer when the session is gone: the engine stops the cascade and reports
                # what it rang.
                self.tally.sessions_lost += 1
                break
        started, pb_legs = lay_out(legs, time.time_ns())
        call = bpb.FinishedCall(
            call_id=call_id,
            zip=zip_code,
            caller_number=caller,
            started_at=stamp(started),
            mode=legs[0].mode if legs else bpb.CALL_MODE_HUMAN,
            legs=pb_legs,
        )
        if legs and rng.random() < 0.85:
            call.recording.CopyFrom(bpb.Recording(uri=f"s3://faults/{call_id}.wav", disclosure_played=True))
            call.transcript_uri = f"s3://faults/{call_id}.txt"
        rate = bpb.RateCallRequest(call=call)
        rated = await self.retried(
            "RateCall", lambda: self.stubs.engine_billing.RateCall(rate, timeout=RPC_TIMEOUT_S)
        )
        sent = SentCall(call, rated.decision)
        if booked_by:
            sent.booking = bpb.RecordBookingRequest(
                booking_id=f"{call_id}-booking",
                call_id=call_id,
                contractor_id=booked_by,
                scheduled_at=stamp(time.time_ns()),
            )
            booked = await self.retried(
                "RecordBooking", lambda: self.stubs.engine_billing.RecordBooking(sent.booking, timeout=RPC_TIMEOUT_S)
            )
            sent.booking_fee_cents = booked.booking.fee_cents
        if rated.decision.billable and not call.HasField("recording"):
            # Nothing recorded: the charge cannot be defended, so billing approves the refund at once.
            refund = bpb.RequestRefundRequest(
                contractor_id=rated.decision.payer_contractor_id,
                charge_id=rated.decision.charge_id,
                reason=bpb.REFUND_REASON_SYSTEM_BUG,
                note="no recording",
                idempotency_key=f"refund-{call_id}",
            )
            case = (
                await self.retried(
                    "RequestRefund", lambda: self.stubs.billing.RequestRefund(refund, timeout=RPC_TIMEOUT_S)
                )
            ).refund_case
            # Approved at once, unless the contractor used up its automatic approvals (then an operator decides).
            assert case.state in (bpb.REFUND_STATE_APPROVED, bpb.REFUND_STATE_PENDING_REVIEW), (
                f"refund on {call_id} came out {case}")
            if case.state == bpb.REFUND_STATE_APPROVED:
                sent.refunded_cents = case.amount_cents
        self.calls.append(sent)

    def summary(self) -> str:
        billable = sum(c.decision.billable for c in self.calls)
        return (
            f"{len(self.calls)} calls ({billable} billable, {len(self.calls) - billable} free, "
            f"{sum(c.booking is not None for c in self.calls)} AI bookings, "
            f"{sum(c.refunded_cents > 0 for c in self.calls)} refunds), {len(self.top_ups)} top-ups"
        )
