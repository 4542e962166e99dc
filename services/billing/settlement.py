"""Exactly-once settlement with the wallet: persist the decision, then move money by a derived key, then record.

Every wallet movement is keyed by a natural id (a reservation is captured once; `call:<id>`, `booking:<id>`,
`refund:<case id>` for the rest), and the decision is stored in state 'settling' before the wallet is called.
So a crash anywhere leaves either nothing (before the decision commits) or a settling row that a re-send or the
sweeper re-drives with the same keys: money moves at most once, and eventually exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import events_pb2
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.billing import events, messages, policy
from services.billing.storage import BillingStore
from services.billing.wallet_client import WalletClient, WalletRefused
from services.runtime.errors import AlreadyExists, DomainError, FailedPrecondition

log = logging.getLogger("callersync.billing.settlement")

_CHARGE_IDS = uuid.UUID("6c1f1d1e-5b0e-4d7a-9a57-0c2b7f1c9e01")
_OPEN = (wpb.RESERVATION_STATE_OPEN, wpb.RESERVATION_STATE_EXPIRED)


def charge_id(natural_key: str) -> str:
    """Deterministic, so every attempt at the same settlement names the same charge."""
    return str(uuid.uuid5(_CHARGE_IDS, natural_key))


def facts_hash(message) -> bytes:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).digest()


class FaultHook:
    """Test hook: when the named file exists at the point between a wallet call and billing's own commit,
    billing deletes it and SIGKILLs itself, as a crash at the worst moment would."""

    def __init__(self, path: str | None) -> None:
        self._path = path

    def crash_point(self) -> None:
        if self._path and os.path.exists(self._path):
            os.remove(self._path)
            os.kill(os.getpid(), signal.SIGKILL)


class Settlement:
    def __init__(self, store: BillingStore, wallet: WalletClient, fault: FaultHook,
                 on_event: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._wallet = wallet
        self._fault = fault
        self._on_event = on_event
        self._in_flight: dict[str, asyncio.Future] = {}

    async def _single_flight(self, key: str, work: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """Concurrent twins in this process share one attempt (the database keeps twins across processes
        correct; this only saves them the duplicate wallet calls). Returns (result, shared)."""
        running = self._in_flight.get(key)
        if running is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(running), True
        future = asyncio.ensure_future(work())
        self._in_flight[key] = future
        try:
            return await future, False
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]

    # ------------------------------------------------------------ finished calls

    async def rate_call(self, call: pb.FinishedCall) -> tuple[asyncpg.Record, bool]:
        """The stored (and settled) decision for the call, and whether it was decided before this request."""
        policy.validate_call(call)
        fp = facts_hash(call)
        row, shared = await self._single_flight(f"call:{call.call_id}", lambda: self._rate(call, fp))
        fresh, row = row
        if bytes(row["facts_hash"]) != fp:
            raise AlreadyExists(
                f"call {call.call_id!r} was already rated with other facts (at {row['decided_at'].isoformat()}: "
                f"{'billable' if row['billable'] else 'free'}); a finished call is rated once and never re-rated. "
                "Send the original facts to get the stored decision, or ExplainCall to read it.",
                reason="CALL_RATED_WITH_OTHER_FACTS", call_id=call.call_id,
            )
        return row, shared or not fresh

    async def _rate(self, call: pb.FinishedCall, fp: bytes) -> tuple[bool, asyncpg.Record]:
        row = await self._store.get_rated_call(call.call_id)
        if row is not None:
            if bytes(row["facts_hash"]) == fp and row["state"] == "settling":
                row = await self.settle_call(row)
            return False, row
        verdict = policy.rate_call(call)
        reservations = await self._wallet.call_reservations(call.call_id)
        capture_id = policy.payer_reservation(verdict, call, reservations)
        if verdict.billable and not capture_id:
            await self._wallet.require_wallet(verdict.payer_contractor_id)
        the_charge = charge_id(f"call:{call.call_id}")

        def decide(rate: asyncpg.Record | None) -> dict[str, Any]:
            if rate is None:
                raise FailedPrecondition(
                    f"ZIP {call.zip} had no rate in effect when call {call.call_id} started "
                    f"({messages.to_datetime(call.started_at).isoformat()}); set one with SetZipRate effective "
                    "on or before that moment, then send the call again (nothing was recorded)",
                    reason="ZIP_NOT_PRICED", zip=call.zip,
                )
            decision = policy.decision_message(call, verdict, rate["rate_cents"], rate["effective_from"], the_charge)
            decision.decided_at.GetCurrentTime()
            return {
                "call_id": call.call_id, "facts_hash": fp, "facts": call.SerializeToString(deterministic=True),
                "zip": call.zip, "caller_number": call.caller_number,
                "started_at": messages.to_datetime(call.started_at), "billable": verdict.billable,
                "rule": pb.DecisionRule.Name(verdict.rule), "payer_contractor_id": verdict.payer_contractor_id,
                "price_cents": decision.price_cents, "decision": decision.SerializeToString(deterministic=True),
                "capture_reservation_id": capture_id, "state": "settling",
                "event": events.payload(events_pb2.BillingEvent(call_rated=events_pb2.CallRated(
                    call_id=call.call_id, zip=call.zip, billable=verdict.billable, rule=verdict.rule,
                    payer_contractor_id=verdict.payer_contractor_id, connected_ms=verdict.connected_ms,
                    price_cents=decision.price_cents, started_at=call.started_at,
                    rung_contractor_ids=[leg.contractor_id for leg in call.legs],
                ))),
            }

        stored = await self._store.insert_decision(call.zip, messages.to_datetime(call.started_at), decide)
        if stored is None:  # a twin in another process decided first
            row = await self._store.get_rated_call(call.call_id)
            if bytes(row["facts_hash"]) == fp and row["state"] == "settling":
                row = await self.settle_call(row)
            return False, row
        self._on_event()
        return True, await self.settle_call(stored, reservations)

    async def settle_call(self, row: asyncpg.Record, reservations: list | None = None) -> asyncpg.Record:
        """Drives a stored decision to 'settled': capture (or charge) the payer, release every other hold."""
        call_id = row["call_id"]
        try:
            if reservations is None:
                reservations = await self._wallet.call_reservations(call_id)
            entry_id, settled_by = None, "none"
            if row["billable"]:
                entry_id, settled_by = await self._debit_call(row)
            capture_id = row["capture_reservation_id"] if settled_by == "capture" else ""
            await asyncio.gather(*(
                self._release(r.reservation_id) for r in reservations
                if r.state in _OPEN and r.reservation_id != capture_id
            ))
        except DomainError as err:
            await self._store.note_failure("rated_calls", "call_id", call_id, err.message)
            raise
        self._fault.crash_point()
        charge = None
        if row["billable"]:
            call = pb.FinishedCall.FromString(bytes(row["facts"]))
            charge = {
                "charge_id": charge_id(f"call:{call_id}"), "contractor_id": row["payer_contractor_id"],
                "kind": "call", "call_id": call_id, "zip": row["zip"], "amount_cents": row["price_cents"],
                "wallet_entry_id": entry_id, "recording_uri": call.recording.uri,
                "disclosure_played": call.recording.disclosure_played, "transcript_uri": call.transcript_uri,
            }
        return await self._store.finish_call(call_id, settled_by, entry_id, charge)

    async def _debit_call(self, row: asyncpg.Record) -> tuple[int, str]:
        call_id, price = row["call_id"], row["price_cents"]
        description = f"call {call_id} to ZIP {row['zip']}: connected 30 s or more"
        if row["capture_reservation_id"]:
            try:
                entry = await self._wallet.capture(row["capture_reservation_id"], price, description)
                return entry.entry_id, "capture"
            except WalletRefused as err:
                # The hold is gone (released by routing, or never stored): the call is still owed, so charge it
                # by its own key; a retry lands here again and the key replays the same entry.
                if err.reason not in ("RESERVATION_RELEASED", "NO_RESERVATION"):
                    raise FailedPrecondition(
                        f"the wallet refused to capture reservation {row['capture_reservation_id']} for call "
                        f"{call_id}: {err.message}. The decision is stored; an operator must settle it.",
                        reason="CAPTURE_REFUSED",
                    ) from None
        entry = await self._wallet.charge(row["payer_contractor_id"], price, f"call:{call_id}", call_id, description)
        return entry.entry_id, "charge"

    async def _release(self, reservation_id: str) -> None:
        try:
            await self._wallet.release(reservation_id)
        except WalletRefused as err:
            # A hold of a leg that did not pay was captured by someone else: that is a double bill for the
            # refund desk to catch, not a reason to leave this call unsettled.
            log.warning("could not release reservation %s: %s", reservation_id, err)

    # ------------------------------------------------------------ bookings

    async def record_booking(self, request: pb.RecordBookingRequest) -> tuple[asyncpg.Record, bool]:
        fp = facts_hash(request)
        (fresh, row), shared = await self._single_flight(
            f"booking:{request.booking_id}", lambda: self._record_booking(request, fp)
        )
        if bytes(row["facts_hash"]) != fp:
            raise AlreadyExists(
                f"booking {request.booking_id!r} was already recorded with other details (call {row['call_id']}, "
                f"contractor {row['contractor_id']}); a booking is charged once. Send the original details to "
                "get it back.",
                reason="BOOKING_RECORDED_WITH_OTHER_FACTS", booking_id=request.booking_id,
            )
        return row, shared or not fresh

    async def _record_booking(self, request: pb.RecordBookingRequest, fp: bytes) -> tuple[bool, asyncpg.Record]:
        row = await self._store.get_booking(request.booking_id)
        if row is None:
            await self._wallet.require_wallet(request.contractor_id)

            def decide(fee: asyncpg.Record) -> dict[str, Any]:
                return {
                    "booking_id": request.booking_id, "facts_hash": fp, "call_id": request.call_id,
                    "contractor_id": request.contractor_id,
                    "scheduled_at": messages.to_datetime(request.scheduled_at),
                    "appointment_at": (messages.to_datetime(request.appointment_at)
                                       if request.HasField("appointment_at") else None),
                    "fee_cents": fee["fee_cents"], "fee_effective_from": fee["effective_from"],
                    "charge_id": charge_id(f"booking:{request.booking_id}"), "state": "settling",
                }

            stored = await self._store.insert_booking(messages.to_datetime(request.scheduled_at), decide)
            fresh = stored is not None
            row = stored or await self._store.get_booking(request.booking_id)
        else:
            fresh = False
        if bytes(row["facts_hash"]) == fp and row["state"] == "settling":
            row = await self.settle_booking(row)
        return fresh, row

    async def settle_booking(self, row: asyncpg.Record) -> asyncpg.Record:
        booking_id = row["booking_id"]
        try:
            entry = await self._wallet.charge(
                row["contractor_id"], row["fee_cents"], f"booking:{booking_id}", booking_id,
                f"AI agent booked appointment {booking_id} on call {row['call_id']}",
            )
        except DomainError as err:
            await self._store.note_failure("bookings", "booking_id", booking_id, err.message)
            raise
        self._fault.crash_point()
        # The AI call's recording and transcript, when that call was reported, are the booking's evidence.
        rated = await self._store.get_rated_call(row["call_id"])
        call = pb.FinishedCall.FromString(bytes(rated["facts"])) if rated else pb.FinishedCall()
        return await self._store.finish_booking(booking_id, entry.entry_id, {
            "charge_id": row["charge_id"], "contractor_id": row["contractor_id"], "kind": "booking",
            "call_id": row["call_id"], "booking_id": booking_id, "zip": call.zip, "amount_cents": row["fee_cents"],
            "wallet_entry_id": entry.entry_id, "charged_at": row["scheduled_at"],
            "recording_uri": call.recording.uri, "disclosure_played": call.recording.disclosure_played,
            "transcript_uri": call.transcript_uri,
        })

    # ------------------------------------------------------------ refunds

    async def credit_refund(self, case: asyncpg.Record) -> asyncpg.Record:
        """Credits an approved case once (key `refund:<case id>`); an approved spam case also asks routing to
        block the caller, in the same transaction that records the credit."""
        case_id = case["refund_case_id"]
        charge = await self._store.get_charge(case["charge_id"])
        try:
            entry = await self._wallet.refund(
                charge["wallet_entry_id"], case["amount_cents"], f"refund:{case_id}",
                f"refund case {case_id} ({case['reason']}) on charge {charge['charge_id']}",
            )
        except WalletRefused as err:
            await self._store.note_failure("refund_cases", "refund_case_id", case_id, str(err))
            raise FailedPrecondition(
                f"the wallet refused the refund of case {case_id}: {err.message}", reason=err.reason or "REFUND_REFUSED"
            ) from None
        except DomainError as err:
            await self._store.note_failure("refund_cases", "refund_case_id", case_id, err.message)
            raise
        event = None
        if case["reason"] == "REFUND_REASON_SPAM":
            rated = await self._store.get_rated_call(charge["call_id"])
            event = events.payload(events_pb2.BillingEvent(caller_block_requested=events_pb2.CallerBlockRequested(
                caller_number=rated["caller_number"] if rated else "", refund_case_id=case_id,
                contractor_id=charge["contractor_id"], call_id=charge["call_id"], reviewer=case["reviewer"],
            )))
        self._fault.crash_point()
        row = await self._store.finish_refund(case_id, entry.entry_id, event)
        if event is not None:
            self._on_event()
        return row

    # ------------------------------------------------------------ sweeper

    async def sweep_once(self, older_than_s: float, limit: int = 100) -> int:
        """Re-drives settlements left unfinished by a crash or an outage; returns how many it finished."""
        todo = await self._store.settling(older_than_s, limit)
        done = 0
        for call_id in todo["calls"]:
            done += await self._redrive(self._store.get_rated_call(call_id), self.settle_call)
        for booking_id in todo["bookings"]:
            done += await self._redrive(self._store.get_booking(booking_id), self.settle_booking)
        for case_id in todo["refunds"]:
            done += await self._redrive(self._store.get_case(case_id), self.credit_refund)
        return done

    @staticmethod
    async def _redrive(fetch: Awaitable[asyncpg.Record | None], settle) -> int:
        row = await fetch
        if row is None:
            return 0
        try:
            await settle(row)
            return 1
        except DomainError as err:
            log.warning("settlement still unfinished: %s", err.message)
            return 0


class Sweeper:
    def __init__(self, settlement: Settlement, interval_s: float, older_than_s: float) -> None:
        self._settlement = settlement
        self._interval_s = interval_s
        self._older_than_s = older_than_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="billing-settlement-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._settlement.sweep_once(self._older_than_s)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # PostgreSQL or the wallet down: try again next round
                log.warning("settlement sweeper: %s", err)
            await asyncio.sleep(self._interval_s)
