"""`callersync demo`: drives a running stack through a day (scenario.py) over the public gRPC APIs only, prints
what happens call by call, a summary per contractor (report.py), and ends with the ledger reconciliation.
Identifiers are fresh per run, so the demo can run again and again against the same stack."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import pathlib
import random
import re
import secrets
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.billing.v1 import billing_pb2_grpc
from callersync.routing.v1 import routing_pb2 as rpb
from callersync.routing.v1 import routing_pb2_grpc
from callersync.wallet.v1 import wallet_pb2 as wpb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.demo import payments, recordings, scenario
from services.demo.legs import LegSpec, ai_leg, describe, human_leg, lay_out, stamp
from services.demo.report import Tally, skip_lines, table
from services.demo.scenario import CallPlan, Ring, TopUp
from services.runtime import channels
from services.runtime.config import Settings
from services.runtime.money import dollars

TIMEOUT_S = 10.0
BLOCK_WAIT_S = 15.0
AREA_CODES = ("212", "312", "415", "512", "617", "713", "808", "919")
RING_OUTCOME = {scenario.NO_ANSWER: rpb.RING_OUTCOME_NO_ANSWER, scenario.DECLINED: rpb.RING_OUTCOME_DECLINED}
SHORT_RULES = {
    bpb.DECISION_RULE_BILLABLE_CONNECTED_30S: "billable (connected 30 s+)",
    bpb.DECISION_RULE_BILLABLE_DROPPED_AFTER_30S: "billable (dropped after 30 s)",
    bpb.DECISION_RULE_FREE_NO_ANSWER: "free (nobody answered)",
    bpb.DECISION_RULE_FREE_VOICEMAIL: "free (voicemail)",
    bpb.DECISION_RULE_FREE_UNDER_30S: "free (under 30 s)",
    bpb.DECISION_RULE_FREE_AI_MODE: "free (AI mode: billed per booking)",
    bpb.DECISION_RULE_FREE_NO_LEGS: "free (nobody rung)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="replay the same day (outcomes, figures)")
    parser.add_argument("--contractors", type=int, default=5, help="how many contractors (at least 3)")
    parser.add_argument(
        "--calls", type=int, default=40, help=f"how many calls arrive (at least {scenario.MIN_CALLS})"
    )
    parser.add_argument(
        "--engine-cert", default=os.environ.get("CALLERSYNC_DEMO_ENGINE_CERT_FILE", ""),
        help="under mutual TLS: the routing engine's certificate, for the calls only the engine may make "
        "(RouteCall, NextCandidate, RateCall, RecordBooking); CALLERSYNC_TLS_* name the operator's",
    )
    parser.add_argument("--engine-key", default=os.environ.get("CALLERSYNC_DEMO_ENGINE_KEY_FILE", ""),
                        help="the key of --engine-cert")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def now_ns() -> int:
    return time.time_ns()


class Demo:
    def __init__(self, settings: Settings, seed: int | None, n_contractors: int, n_calls: int,
                 engine_settings: Settings | None = None) -> None:
        self.settings = settings
        # The demo plays two callers: an operator (rate card, top-ups, claims, refunds) and the telephony engine
        # (routing and reporting calls). Under mutual TLS each is its own certificate (docs/security.md).
        self.engine_settings = engine_settings or settings
        self.day = scenario.plan_day(seed, n_contractors, n_calls)
        self.run_id = secrets.token_hex(3)
        self.ids = random.Random(secrets.randbits(64))  # identifiers: fresh each run, whatever the seed
        self.set_by = f"demo-{self.run_id}"
        self.browser: payments.Browser | None = None  # set by connect() when a payment provider answers
        self.failures: list[str] = []
        self.tallies = [
            Tally(c.name, f"demo-{self.run_id}-{slug(c.name)}", c.mode) for c in self.day.contractors
        ]
        self.by_id = {t.contractor_id: t for t in self.tallies}
        self.zips: list[str] = []
        self.spam_number = self.new_number()
        self.spam_zip = ""
        self.charges: list[tuple[CallPlan, bpb.RatingDecision]] = []
        self.calls = 0
        self.billable_calls = 0
        self.channels: list[grpc.aio.Channel] = []
        self.media_dir: pathlib.Path | None = None  # set by connect(): the running `up`'s media folder

    # ------------------------------------------------------------ plumbing

    def new_number(self) -> str:
        return f"+1{self.ids.choice(AREA_CODES)}{self.ids.randrange(2_000_000, 10_000_000)}"

    def fail(self, what: str) -> None:
        self.failures.append(what)
        print(f"  FAILED: {what}", flush=True)

    def name(self, contractor_id: str) -> str:
        tally = self.by_id.get(contractor_id)
        return tally.name if tally else contractor_id

    async def connect(self) -> bool:
        stubs = {}
        for service in ("wallet", "billing", "routing"):
            target = self.settings.target_of(service)
            channel = channels.client_channel(target, "demo", self.settings)
            self.channels.append(channel)
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError as err:
                serving = False
                print(f"cannot reach {service} at {target} ({err.code().name})")
            if not serving:
                print(
                    f"{service} at {target} is not serving: start the stack with `callersync up` in another "
                    f"terminal, or point CALLERSYNC_{service.upper()}_TARGET at it"
                )
                return False
            stubs[service] = channel
        self.wallet = wallet_pb2_grpc.WalletServiceStub(stubs["wallet"])
        self.billing = billing_pb2_grpc.BillingServiceStub(stubs["billing"])
        self.routing = routing_pb2_grpc.RoutingServiceStub(stubs["routing"])
        if self.engine_settings is self.settings:
            self.engine_billing, self.engine_routing = self.billing, self.routing
        else:
            engine = [channels.client_channel(self.settings.target_of(s), "demo-engine", self.engine_settings)
                      for s in ("billing", "routing")]
            self.channels += engine
            self.engine_billing = billing_pb2_grpc.BillingServiceStub(engine[0])
            self.engine_routing = routing_pb2_grpc.RoutingServiceStub(engine[1])
        self.media_dir = recordings.media_dir(self.settings)
        base = await asyncio.to_thread(payments.provider_base, self.settings)
        self.browser = payments.Browser(base, self.settings.stripe_api_key) if base else None
        print(f"payments: {'by card through ' + base if base else 'no payment provider: operators credit by hand'}",
              flush=True)
        return True

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    # ------------------------------------------------------------ morning: rate card, wallets, claims

    async def unused_zip(self) -> str:
        """A ZIP nobody has priced or claimed, so this run's day is its own."""
        while True:
            candidate = f"{self.ids.randrange(10_000, 100_000):05d}"
            if candidate in self.zips:
                continue
            try:
                await self.billing.GetRateCard(bpb.GetRateCardRequest(zip=candidate), timeout=TIMEOUT_S)
                continue
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            claims = await self.routing.ListClaims(rpb.ListClaimsRequest(zip=candidate), timeout=TIMEOUT_S)
            if not claims.claims:
                return candidate

    async def set_up(self) -> None:
        day = self.day
        start = now_ns()
        print(
            f"demo run {self.run_id}: {len(day.contractors)} contractors, "
            f"{sum(isinstance(e, CallPlan) for e in day.events) + 1} calls",
            flush=True,
        )
        print("\n== morning: the operator sets the rate card", flush=True)
        fee = await self.billing.SetBookingFee(
            bpb.SetBookingFeeRequest(
                fee_cents=day.booking_fee_cents, effective_from=stamp(start), set_by=self.set_by
            ),
            timeout=TIMEOUT_S,
        )
        print(f"  AI booking fee {dollars(fee.booking_fee.fee_cents)}", flush=True)
        for plan in day.zips:
            self.zips.append(await self.unused_zip())
            # From two hours ago, so every call of the day (laid out in the recent past) finds its rate.
            await self.billing.SetZipRate(
                bpb.SetZipRateRequest(
                    zip=self.zips[-1],
                    rate_cents=plan.rate_cents,
                    effective_from=stamp(start - 7200 * 10**9),
                    set_by=self.set_by,
                ),
                timeout=TIMEOUT_S,
            )
        print(
            "  ZIP rates: "
            + ", ".join(f"{z} {dollars(p.rate_cents)}" for z, p in zip(self.zips, day.zips, strict=True)),
            flush=True,
        )

        print("\n== contractors top up, pick a mode and hours, and claim ZIPs", flush=True)
        for contractor, tally in zip(day.contractors, self.tallies, strict=True):
            await self.top_up(tally, contractor.top_up_cents, "opening balance")
            if contractor.mode == "ai_agent":
                await self.routing.SetMode(
                    rpb.SetModeRequest(contractor_id=tally.contractor_id, mode=rpb.CONTRACTOR_MODE_AI_AGENT),
                    timeout=TIMEOUT_S,
                )
            else:  # a small office: a couple of lines, so back-to-back calls are not turned away as busy
                await self.routing.SetCaps(
                    rpb.SetCapsRequest(
                        contractor_id=tally.contractor_id, caps=rpb.Caps(max_concurrent_calls=3)
                    ),
                    timeout=TIMEOUT_S,
                )
            if contractor.day_off:
                await self.take_day_off(tally)
        for plan, zip_code in zip(day.zips, self.zips, strict=True):
            claimed = [(plan.primary, rpb.CLAIM_POSITION_PRIMARY)] + [
                (b, rpb.CLAIM_POSITION_BACKUP) for b in plan.backups
            ]
            for index, position in claimed:
                reply = await self.routing.ClaimZip(
                    rpb.ClaimZipRequest(
                        contractor_id=self.tallies[index].contractor_id, zip=zip_code, position=position
                    ),
                    timeout=TIMEOUT_S,
                )
            order = ", ".join(
                f"{self.name(c.contractor_id)}"
                + ("" if c.position == rpb.CLAIM_POSITION_PRIMARY else f" (backup {c.backup_rank})")
                for c in reply.zip_claims
            )
            print(f"  ZIP {zip_code}: {order}", flush=True)
        for contractor, tally in zip(day.contractors, self.tallies, strict=True):
            wallet = (
                await self.wallet.GetWallet(
                    wpb.GetWalletRequest(contractor_id=tally.contractor_id), timeout=TIMEOUT_S
                )
            ).wallet
            mode = "AI agent" if contractor.mode == "ai_agent" else "human"
            hours = ", off today" if contractor.day_off else ""
            print(
                f"  {tally.name}: {mode}{hours}; balance {dollars(wallet.balance_cents)}, pauses below "
                f"{dollars(wallet.pause_threshold_cents)}",
                flush=True,
            )
            if wallet.paused:
                self.fail(f"{tally.name} is paused right after the opening top-up")

    async def top_up(self, tally: Tally, cents: int, why: str) -> wpb.LedgerEntry:
        """An operator's credit with a reason (the opening balances: the demo's contractors signed up offline)."""
        key = f"{tally.contractor_id}-topup-{tally.topped_up_cents}-{cents}"
        reply = await self.wallet.TopUp(
            wpb.TopUpRequest(
                reason=f"demo: {why}",
                contractor_id=tally.contractor_id,
                amount_cents=cents,
                payment_reference=f"pay-{key}",
                idempotency_key=key,
            ),
            timeout=TIMEOUT_S,
        )
        tally.topped_up_cents += cents
        return reply.entry

    async def card_top_up(self, tally: Tally, cents: int) -> int:
        """The contractor pays by card; returns the balance once the wallet credited the verified payment."""
        assert self.browser is not None
        key = f"{tally.contractor_id}-card-{tally.topped_up_cents}-{cents}"
        top_up = await payments.card_top_up(self.wallet, self.browser, tally.contractor_id, cents, key)
        if top_up.state != wpb.TOP_UP_STATE_CREDITED:
            self.fail(f"{tally.name}'s card top-up was not credited: {wpb.TopUpState.Name(top_up.state)} "
                      f"{top_up.failure_reason}")
            return (await self.check_pause(tally)).balance_cents
        tally.topped_up_cents += top_up.credited_cents
        wallet = (await self.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=tally.contractor_id),
                                              timeout=TIMEOUT_S)).wallet
        print(f"    paid by card ({top_up.card_brand} ending {top_up.card_last4}), PaymentIntent "
              f"{top_up.payment_intent_id}: credited once the provider confirmed it", flush=True)
        return wallet.balance_cents

    async def auto_top_up(self) -> None:
        """A contractor with auto top-up on: a burst of ringing calls takes the available balance below their
        threshold, their saved card is charged off-session, and they never pause."""
        if self.browser is None:
            return
        if self.engine_settings is not self.settings:
            # Under mutual TLS the demo's operator identity may not hold funds (Reserve is routing's alone).
            print("\n== auto top-up: not shown under mutual TLS (the burst of holds needs routing's identity)")
            return
        tally = next((t for t, c in zip(self.tallies, self.day.contractors, strict=True)
                      if c.mode == "human" and not c.day_off and t.paused_since is None), None)
        if tally is None:
            return
        print("\n== auto top-up", flush=True)
        who = tally.contractor_id
        setup = await self.wallet.StartCardSetup(wpb.StartCardSetupRequest(contractor_id=who), timeout=TIMEOUT_S)
        await asyncio.to_thread(self.browser.save_card, setup.setup_intent_id)
        wallet = (await self.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=who), timeout=TIMEOUT_S)).wallet
        line = max(wallet.pause_threshold_cents, 2500)
        threshold = line + 2500
        amount = max(2500, (wallet.balance_cents // 100) * 100)  # enough to double what they hold
        await self.wallet.SetAutoTopUp(wpb.SetAutoTopUpRequest(
            contractor_id=who, enabled=True, threshold_cents=threshold, amount_cents=amount,
            max_per_day_cents=amount * 2, email=f"{who}@example.com"), timeout=TIMEOUT_S)
        print(f"  {tally.name} saves a card and turns auto top-up on: {dollars(amount)} when the available balance "
              f"falls below {dollars(threshold)} (pauses below {dollars(wallet.pause_threshold_cents)})", flush=True)
        last = (await self.wallet.ListEntries(wpb.ListEntriesRequest(contractor_id=who, page_size=1),
                                              timeout=TIMEOUT_S)).entries[0].entry_id
        hold = max(1, wallet.available_cents - threshold + 1)
        call_id = f"demo-{self.run_id}-burst"
        reservation = (await self.wallet.Reserve(wpb.ReserveRequest(
            contractor_id=who, call_id=call_id, amount_cents=hold, expires_in_s=60), timeout=TIMEOUT_S)).reservation
        print(f"  calls ringing at once hold {dollars(hold)}: available {dollars(wallet.available_cents - hold)}, "
              f"below the threshold", flush=True)
        entry = await payments.auto_top_up_credit(self.wallet, who, last)
        await self.wallet.Release(wpb.ReleaseRequest(reservation_id=reservation.reservation_id), timeout=TIMEOUT_S)
        if entry is None:
            self.fail(f"{tally.name}'s auto top-up was not credited")
            return
        tally.topped_up_cents += entry.amount_cents
        after = await self.check_pause(tally)
        print(f"  + auto top-up charged the saved card {dollars(entry.amount_cents)} ({entry.description}): "
              f"balance {dollars(entry.balance_after_cents)}; paused: {'yes' if after.paused else 'no, never'}",
              flush=True)
        if after.paused:
            self.fail(f"{tally.name} paused despite the auto top-up")

    async def take_day_off(self, tally: Tally) -> None:
        """Weekday hours on every day but today (in their zone): routing skips them as outside hours."""
        zone = "America/Chicago"
        from zoneinfo import ZoneInfo

        today = dt.datetime.now(ZoneInfo(zone)).isoweekday()
        hours = [
            rpb.WeeklyHours(day=d, start_minute=7 * 60, end_minute=19 * 60) for d in range(1, 8) if d != today
        ]
        await self.routing.SetSchedule(
            rpb.SetScheduleRequest(contractor_id=tally.contractor_id, time_zone=zone, weekly_hours=hours),
            timeout=TIMEOUT_S,
        )

    # ------------------------------------------------------------ the day's calls

    def note_skips(self, skipped) -> list[str]:
        words = []
        for s in skipped:
            reason = rpb.SkipReason.Name(s.reason).removeprefix("SKIP_REASON_")
            tally = self.by_id.get(s.contractor_id)
            if tally is not None:
                tally.skipped[reason] += 1
                if s.reason == rpb.SKIP_REASON_PAUSED and tally.pause():
                    print(f"  ! {tally.name} is paused (routing: {s.message})", flush=True)
            words.append(f"{self.name(s.contractor_id)} skipped ({reason.lower().replace('_', ' ')})")
        return words

    async def take_call(self, plan: CallPlan, caller: str | None = None) -> bpb.RatingDecision | None:
        self.calls += 1
        call_id = f"demo-{self.run_id}-call-{self.calls:03d}"
        zip_code = self.zips[plan.zip_index]
        caller = caller or (self.spam_number if plan.spam else self.new_number())
        if plan.spam:
            self.spam_zip = zip_code
        reply = await self.engine_routing.RouteCall(
            rpb.RouteCallRequest(call_id=call_id, zip=zip_code, caller_number=caller), timeout=TIMEOUT_S
        )
        story = self.note_skips(reply.skipped)
        legs: list[LegSpec] = []
        rings = list(plan.rings)
        booked_by = ""
        while reply.outcome == rpb.ROUTE_OUTCOME_OFFERED:
            cand = reply.candidate
            self.by_id[cand.contractor_id].offered += 1
            if cand.mode == rpb.CONTRACTOR_MODE_AI_AGENT:  # the AI always picks up
                legs.append(ai_leg(cand.contractor_id, cand.reservation_id, plan.ai_talk_s))
                story.append(describe(self.name(cand.contractor_id), legs[-1], None, plan.books))
                booked_by = cand.contractor_id if plan.books else ""
                break
            ring = rings.pop(0) if rings else Ring(scenario.NO_ANSWER, 20.0)
            legs.append(human_leg(cand.contractor_id, cand.reservation_id, ring))
            story.append(describe(self.name(cand.contractor_id), legs[-1], ring))
            if legs[-1].answered:
                break
            reply = await self.engine_routing.NextCandidate(
                rpb.NextCandidateRequest(
                    call_id=call_id, after_step=cand.step, ring_outcome=RING_OUTCOME[ring.kind]
                ),
                timeout=TIMEOUT_S,
            )
            story += self.note_skips(reply.skipped)
        if reply.outcome != rpb.ROUTE_OUTCOME_OFFERED:
            story.append(
                rpb.RouteOutcome.Name(reply.outcome).removeprefix("ROUTE_OUTCOME_").lower().replace("_", " ")
            )
        decision = await self.rate(call_id, zip_code, caller, plan, legs)
        result = SHORT_RULES.get(decision.rule, bpb.DecisionRule.Name(decision.rule))
        if decision.billable:
            result += f" {dollars(decision.price_cents)} to {self.name(decision.payer_contractor_id)}"
        print(f"  {self.calls:>3} {zip_code} {'; '.join(story)}  ->  {result}", flush=True)
        if plan.note:
            print(f"      ({plan.note})", flush=True)
        if decision.billable:
            await self.check_pause(self.by_id[decision.payer_contractor_id])
        if booked_by:
            await self.book(call_id, booked_by)
        return decision

    async def rate(
        self, call_id: str, zip_code: str, caller: str, plan: CallPlan, legs: list[LegSpec]
    ) -> bpb.RatingDecision:
        started, pb_legs = lay_out(legs, now_ns())
        mode = legs[0].mode if legs else bpb.CALL_MODE_HUMAN
        call = bpb.FinishedCall(
            call_id=call_id,
            zip=zip_code,
            caller_number=caller,
            started_at=stamp(started),
            mode=mode,
            legs=pb_legs,
        )
        if plan.recorded and legs:
            recordings.attach(call, self.media_dir, self.run_id, plan.spam)
        decision = (await self.engine_billing.RateCall(bpb.RateCallRequest(call=call), timeout=TIMEOUT_S)).decision
        for leg in decision.legs:
            tally = self.by_id.get(leg.contractor_id)
            if tally is None:
                continue
            if leg.billable:
                tally.billable += 1
            else:
                tally.free += 1
        if decision.billable:
            self.billable_calls += 1
            payer = self.by_id[decision.payer_contractor_id]
            payer.charged_cents += decision.price_cents
            self.charges.append((plan, decision))
        return decision

    async def book(self, call_id: str, contractor_id: str) -> None:
        now = dt.datetime.now(dt.UTC)
        scheduled = Timestamp()
        scheduled.FromDatetime(now)
        appointment = Timestamp()
        appointment.FromDatetime(
            (now + dt.timedelta(days=1 + self.calls % 3)).replace(hour=15, minute=0, second=0, microsecond=0)
        )
        reply = await self.engine_billing.RecordBooking(
            bpb.RecordBookingRequest(
                booking_id=f"{call_id}-booking",
                call_id=call_id,
                contractor_id=contractor_id,
                scheduled_at=scheduled,
                appointment_at=appointment,
            ),
            timeout=TIMEOUT_S,
        )
        tally = self.by_id[contractor_id]
        tally.bookings += 1
        tally.charged_cents += reply.booking.fee_cents
        print(
            f"      booking {reply.booking.booking_id}: fee {dollars(reply.booking.fee_cents)} to {tally.name}",
            flush=True,
        )
        await self.check_pause(tally)

    async def check_pause(self, tally: Tally) -> wpb.Wallet:
        wallet = (
            await self.wallet.GetWallet(
                wpb.GetWalletRequest(contractor_id=tally.contractor_id), timeout=TIMEOUT_S
            )
        ).wallet
        if wallet.paused and tally.pause():
            print(
                f"  ! {tally.name} is paused: balance {dollars(wallet.balance_cents)} < threshold "
                f"{dollars(wallet.pause_threshold_cents)}; routing will pass them over",
                flush=True,
            )
        elif not wallet.paused and tally.paused_since is not None:
            since = time.monotonic() - tally.paused_since
            tally.resume()
            print(
                f"  ! {tally.name} resumed after {since:.1f} s paused: balance {dollars(wallet.balance_cents)}",
                flush=True,
            )
        return wallet

    async def do_top_up(self, event: TopUp) -> None:
        tally = self.tallies[event.contractor]
        if self.browser is not None:
            balance = await self.card_top_up(tally, event.cents)
        else:
            balance = (await self.top_up(tally, event.cents, event.note)).balance_after_cents
        print(
            f"  + {tally.name} tops up {dollars(event.cents)} ({event.note}): balance "
            f"{dollars(balance)}",
            flush=True,
        )
        was_paused = tally.pauses > 0 and tally.paused_since is not None
        wallet = await self.check_pause(tally)
        if was_paused and wallet.paused:
            self.fail(
                f"{tally.name} still paused after topping up to {dollars(wallet.balance_cents)} "
                f"(threshold {dollars(wallet.pause_threshold_cents)})"
            )

    # ------------------------------------------------------------ evening: refunds

    async def refunds(self) -> None:
        print("\n== evening: contractors ask for refunds", flush=True)
        spam = next((d for p, d in self.charges if p.spam), None)
        unrecorded = next((d for p, d in self.charges if not p.recorded), None)
        ordinary = [d for p, d in self.charges if p.recorded and not p.spam]
        wanted = [
            (
                spam,
                bpb.REFUND_REASON_SPAM,
                "robocall, nobody wanted a plumber",
                bpb.REFUND_STATE_PENDING_REVIEW,
            ),
            (unrecorded, bpb.REFUND_REASON_SYSTEM_BUG, "I never got this call", bpb.REFUND_STATE_APPROVED),
            (
                ordinary[0] if ordinary else None,
                bpb.REFUND_REASON_DID_NOT_CLOSE_SALE,
                "they went with another company",
                bpb.REFUND_STATE_REJECTED_INELIGIBLE,
            ),
            (
                ordinary[1] if len(ordinary) > 1 else None,
                bpb.REFUND_REASON_DOUBLE_BILL,
                "I think I paid twice for this one",
                bpb.REFUND_STATE_REJECTED_NOT_DUPLICATE,
            ),
        ]
        for decision, reason, note, expected in wanted:
            label = bpb.RefundReason.Name(reason).removeprefix("REFUND_REASON_").lower().replace("_", " ")
            if decision is None:
                self.fail(f"no billable call to ask a {label} refund on")
                continue
            tally = self.by_id[decision.payer_contractor_id]
            case = (
                await self.billing.RequestRefund(
                    bpb.RequestRefundRequest(
                        contractor_id=tally.contractor_id,
                        charge_id=decision.charge_id,
                        reason=reason,
                        note=note,
                        idempotency_key=f"refund-{decision.charge_id}",
                    ),
                    timeout=TIMEOUT_S,
                )
            ).refund_case
            print(
                f"  {tally.name} asks a {label} refund of {dollars(decision.price_cents)} on call "
                f"{decision.call_id}: {self.state(case)} ({case.resolution_note or 'waits for an operator'})",
                flush=True,
            )
            if case.state != expected:
                self.fail(
                    f"{label} refund on {decision.call_id}: expected {bpb.RefundState.Name(expected)}, "
                    f"got {bpb.RefundState.Name(case.state)}"
                )
            if case.state == bpb.REFUND_STATE_PENDING_REVIEW:
                case = (
                    await self.billing.ResolveRefund(
                        bpb.ResolveRefundRequest(
                            refund_case_id=case.refund_case_id,
                            resolution=bpb.REFUND_RESOLUTION_APPROVE,
                            # Under mutual TLS the operator certificate names the reviewer.
                            reviewer="" if self.settings.tls_cert_file else f"ops-{self.run_id}",
                            note="recording confirms a robocall; caller blocked",
                        ),
                        timeout=TIMEOUT_S,
                    )
                ).refund_case
                print(
                    f"    operator approves: {self.state(case)}, {dollars(case.amount_cents)} credited",
                    flush=True,
                )
                if case.state != bpb.REFUND_STATE_APPROVED:
                    self.fail(f"approving refund case {case.refund_case_id} left it {self.state(case)}")
            if case.state == bpb.REFUND_STATE_APPROVED:
                tally.refunded_cents += case.amount_cents

    @staticmethod
    def state(case: bpb.RefundCase) -> str:
        return bpb.RefundState.Name(case.state).removeprefix("REFUND_STATE_").lower().replace("_", " ")

    async def robocaller_again(self) -> None:
        """Approving the spam refund asks routing to block the number; its next call rings nobody."""
        if not self.spam_zip:
            self.fail("the robocaller never got through, so there is nobody to block")
            return
        deadline = time.monotonic() + BLOCK_WAIT_S
        while time.monotonic() < deadline:
            listed = await self.routing.ListBlockedCallers(
                rpb.ListBlockedCallersRequest(page_size=500), timeout=TIMEOUT_S
            )
            if any(b.caller_number == self.spam_number for b in listed.blocked_callers):
                break
            await asyncio.sleep(0.2)
        else:
            self.fail(
                f"{self.spam_number} not on routing's blocklist {BLOCK_WAIT_S:.0f} s after the spam refund"
            )
        plan = CallPlan(
            self.zips.index(self.spam_zip),
            (Ring(scenario.CONNECTED, 5, 40),),
            note="the robocaller again: blocked, nobody rung, nothing billed",
        )
        decision = await self.take_call(plan, caller=self.spam_number)
        if decision is not None and decision.rule != bpb.DECISION_RULE_FREE_NO_LEGS:
            self.fail(
                f"the blocked robocaller's call was {bpb.DecisionRule.Name(decision.rule)}, not free with no legs"
            )

    # ------------------------------------------------------------ the end

    async def close_books(self) -> None:
        for tally in self.tallies:
            wallet = await self.check_pause(tally)
            tally.balance_cents = wallet.balance_cents
            if wallet.balance_cents != tally.expected_balance():
                self.fail(
                    f"{tally.name}: wallet says {dollars(wallet.balance_cents)}, but top-ups - charges + "
                    f"refunds seen by the demo make {dollars(tally.expected_balance())}"
                )
            if wallet.reserved_cents:
                self.fail(
                    f"{tally.name}: {dollars(wallet.reserved_cents)} still held by reservations after every "
                    "call was rated"
                )
            tally.close()

    def summary(self) -> None:
        print("\n== summary", flush=True)
        for line in table(self.tallies):
            print("  " + line)
        for line in skip_lines(self.tallies):
            print(line)
        free = self.calls - self.billable_calls
        print(
            f"calls: {self.calls} arrived, {self.billable_calls} billable, {free} free; "
            f"{sum(t.bookings for t in self.tallies)} AI bookings"
        )
        for t in self.tallies:
            if t.pauses:
                state = "resumed" if t.resumes and not t.still_paused else "still paused at the end"
                print(
                    f"paused: {t.name}, {t.paused_s:.1f} s in all, {t.skipped.get('PAUSED', 0)} calls passed over"
                    f" while paused; {state}"
                )
        refunded = sum(t.refunded_cents for t in self.tallies)
        print(f"refunds: {dollars(refunded)} credited")

    async def run(self) -> int:
        if not await self.connect():
            return 2
        try:
            await self.set_up()
            print("\n== the day's calls", flush=True)
            for event in self.day.events:
                try:
                    if isinstance(event, TopUp):
                        await self.do_top_up(event)
                    else:
                        await self.take_call(event)
                except grpc.aio.AioRpcError as err:
                    what = (
                        f"top-up of {self.tallies[event.contractor].name}"
                        if isinstance(event, TopUp)
                        else (f"call {self.calls}")
                    )
                    self.fail(f"{what}: {err.code().name}: {err.details()}")
            await self.refunds()
            await self.robocaller_again()
            await self.auto_top_up()
            await self.close_books()
        except grpc.aio.AioRpcError as err:
            self.fail(f"{err.code().name}: {err.details()}")
        finally:
            await self.close()
        self.summary()
        return 1 if self.failures else 0


async def reconcile_ledger(settings: Settings) -> int:
    from services.ops import reconcile
    from services.runtime import stack_file

    try:  # CALLERSYNC_DATABASE_URL, else the database of the `callersync up` running here
        url, _ = stack_file.database_url(settings.database_url, stack_file.find_data_dir())
    except stack_file.NoStack as err:
        print(f"reconcile: skipped: {err}. The demo itself talks to the services only")
        return 0
    return await reconcile(url)


async def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        engine = None
        if args.engine_cert or args.engine_key:
            engine = dataclasses.replace(settings, tls_cert_file=args.engine_cert, tls_key_file=args.engine_key)
        demo = Demo(settings, args.seed, args.contractors, args.calls, engine)
    except ValueError as err:
        print(f"demo: {err}")
        return 2
    code = await demo.run()
    if code == 2:
        return code
    reconciled = await reconcile_ledger(settings)
    if demo.failures:
        print(f"demo: {len(demo.failures)} step(s) failed:")
        for failure in demo.failures:
            print(f"  - {failure}")
    return code or reconciled
