"""Exactly-once settlement with the wallet: persist the decision, then move money by a derived key, then record.

Every wallet movement is keyed by a natural id (a reservation is captured once; `call:<id>`, `booking:<id>`,
`refund:<case id>` for the rest), and the decision is stored in state 'settling' before the wallet is called.
So a crash anywhere leaves either nothing (before the decision commits) or a settling row that a re-send or the
sweeper re-drives with the same keys: money moves at most once, and eventually exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import events_pb2
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.billing import events, freshness, policy
from services.billing.freshness import DEFAULT_LIMITS, FactLimits
from services.billing.storage import BillingStore
from services.billing.wallet_client import WalletClient, WalletRefused, no_wallet
from services.runtime.background import Loop
from services.runtime.errors import AlreadyExists, DomainError, FailedPrecondition
from services.runtime.timestamps import now_stamp, to_datetime

log = logging.getLogger("callersync.billing.settlement")

_CHARGE_IDS = uuid.UUID("6c1f1d1e-5b0e-4d7a-9a57-0c2b7f1c9e01")


def charge_id(natural_key: str) -> str:
    """Deterministic, so every attempt at the same settlement names the same charge: uuid5 of the key,
    spelled out here because uuid.uuid5 and str(UUID) cost 5.6 µs a call against 1.9 (one per billable call)."""
    digest = bytearray(hashlib.sha1(_CHARGE_IDS.bytes + natural_key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def facts_of(message) -> bytes:
    """The facts as stored and hashed: one serialization serves both."""
    return message.SerializeToString(deterministic=True)


def facts_hash(message, facts: bytes | None = None) -> bytes:
    return hashlib.sha256(facts if facts is not None else facts_of(message)).digest()


def _rated_with_other_facts(call_id: str, row: asyncpg.Record) -> AlreadyExists:
    return AlreadyExists(
        f"call {call_id!r} was already rated with other facts (at {row['decided_at'].isoformat()}: "
        f"{'billable' if row['billable'] else 'free'}); a finished call is rated once and never re-rated. "
        "Send the original facts to get the stored decision, or ExplainCall to read it.",
        reason="CALL_RATED_WITH_OTHER_FACTS", call_id=call_id,
    )


def _decision_row(call: pb.FinishedCall, verdict: policy.Verdict, facts: bytes, started_at: dt.datetime,
                  rate: asyncpg.Record | None, decided_at: Timestamp) -> dict[str, Any]:
    """The decision to store before any money moves (with its CallRated event under "event")."""
    if rate is None:
        raise FailedPrecondition(
            f"ZIP {call.zip} had no rate in effect when call {call.call_id} started "
            f"({started_at.isoformat()}); set one with SetZipRate effective "
            "on or before that moment, then send the call again (nothing was recorded)",
            reason="ZIP_NOT_PRICED", zip=call.zip,
        )
    the_charge = charge_id(f"call:{call.call_id}") if verdict.billable else ""
    decision = policy.decision_message(call, verdict, rate["rate_cents"], rate["effective_from"], the_charge)
    decision.decided_at.CopyFrom(decided_at)
    return {
        "call_id": call.call_id, "facts_hash": facts_hash(call, facts), "facts": facts,
        "zip": call.zip, "caller_number": call.caller_number,
        "started_at": started_at, "billable": verdict.billable,
        "rule": pb.DecisionRule.Name(verdict.rule), "payer_contractor_id": verdict.payer_contractor_id,
        "price_cents": decision.price_cents, "decision": decision.SerializeToString(deterministic=True),
        # Which hold pays is the wallet's to find (the payer's on this call) and is recorded at settlement.
        "capture_reservation_id": "", "state": "settling",
        "event": events.payload(events_pb2.BillingEvent(call_rated=events_pb2.CallRated(
            call_id=call.call_id, zip=call.zip, billable=verdict.billable, rule=verdict.rule,
            payer_contractor_id=verdict.payer_contractor_id, connected_ms=verdict.connected_ms,
            price_cents=decision.price_cents, started_at=call.started_at,
            rung_contractor_ids=[leg.contractor_id for leg in call.legs],
        ))),
    }


def _settlement_item(row: asyncpg.Record) -> wpb.CallSettlement:
    """The same key, reference and description the single Capture/Charge settlement used, so the wallet
    replays whatever an earlier attempt (of either kind) moved."""
    call_id = row["call_id"]
    if not row["billable"]:
        return wpb.CallSettlement(call_id=call_id)
    return wpb.CallSettlement(
        call_id=call_id, payer_contractor_id=row["payer_contractor_id"], amount_cents=row["price_cents"],
        idempotency_key=f"call:{call_id}", reference=call_id,
        description=f"call {call_id} to ZIP {row['zip']}: connected 30 s or more",
    )


def _settlement_refused(row: asyncpg.Record, result: wpb.CallSettlementResult) -> DomainError:
    if result.reason == "NO_WALLET":
        return no_wallet(row["payer_contractor_id"])
    if result.reason == "RESERVATION_ALREADY_CAPTURED":
        return FailedPrecondition(
            f"the wallet refused to capture the payer's reservation for call {row['call_id']}: {result.message}. "
            "The decision is stored; an operator must settle it.",
            reason="CAPTURE_REFUSED",
        )
    return FailedPrecondition(
        f"the wallet refused to settle call {row['call_id']}: {result.message}. The decision is stored; an "
        "operator must settle it.",
        reason=result.reason or "SETTLEMENT_REFUSED",
    )


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
                 on_event: Callable[[], None] = lambda: None, limits: FactLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
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
        [outcome] = await self.rate_calls([call])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def rate_calls(self, calls: list[pb.FinishedCall]) -> list[tuple[asyncpg.Record, bool] | DomainError]:
        """rate_call for a batch, each call with its own outcome, at a fixed cost per batch: one read of the
        stored decisions, one wallet check of the payers, one transaction of decisions, one SettleCalls, one
        transaction marking them settled. Concurrent twins (in this process or another) are kept correct by
        the database: one insert wins, and the wallet's keys make every other settlement a replay."""
        out: list[Any] = [None] * len(calls)
        first_of: dict[str, int] = {}
        unique: list[int] = []
        now_s = time.time()
        for i, call in enumerate(calls):
            try:
                policy.validate_call(call)
                freshness.check_call(call, self._limits, now_s)
            except DomainError as err:
                out[i] = err
                continue
            if first_of.setdefault(call.call_id, i) == i:
                unique.append(i)
        facts = {i: facts_of(calls[i]) for i in unique}
        fp = {i: facts_hash(calls[i], facts[i]) for i in unique}
        stored = await self._store.rated_calls_by_id([calls[i].call_id for i in unique])
        new = [i for i in unique if calls[i].call_id not in stored]
        fresh: dict[str, asyncpg.Record] = {}
        if new:
            fresh = await self._decide(calls, new, facts, out)
            lost = [calls[i].call_id for i in new if out[i] is None and calls[i].call_id not in fresh]
            stored.update(fresh)
            if lost:  # a twin in another request decided first
                stored.update(await self._store.rated_calls_by_id(lost))
        rows: dict[int, asyncpg.Record] = {}
        for i in unique:
            if out[i] is None:
                row = stored[calls[i].call_id]
                if bytes(row["facts_hash"]) != fp[i]:
                    out[i] = _rated_with_other_facts(calls[i].call_id, row)
                else:
                    rows[i] = row
        settled, failed = await self.settle_calls([r for r in rows.values() if r["state"] == "settling"])
        for i, row in rows.items():
            call_id = calls[i].call_id
            out[i] = failed.get(call_id) or (settled.get(call_id, row), call_id not in fresh)
        for i, call in enumerate(calls):
            if out[i] is None:  # the same call id twice in the batch: the later ones are re-sends
                first = out[first_of[call.call_id]]
                if isinstance(first, DomainError):
                    out[i] = first
                elif bytes(first[0]["facts_hash"]) != facts_hash(call):
                    out[i] = _rated_with_other_facts(call.call_id, first[0])
                else:
                    out[i] = (first[0], True)
        return out

    async def _decide(self, calls: list[pb.FinishedCall], new: list[int], facts: dict[int, bytes],
                      out: list[Any]) -> dict[str, asyncpg.Record]:
        """Rates the calls never stored and stores their decisions in state 'settling' (with their CallRated
        events) before any money moves. Refusals go into out and store nothing."""
        verdicts = {i: policy.rate_call(calls[i]) for i in new}
        payers = sorted({v.payer_contractor_id for v in verdicts.values() if v.billable})
        # A payer with a hold on the call has a wallet; one without a wallet cannot be settled, so the call is
        # refused before anything is written (the contractor tops up, the call is sent again).
        missing = await self._wallet.without_wallet(payers) if payers else set()
        deciding = []
        for i in new:
            if verdicts[i].billable and verdicts[i].payer_contractor_id in missing:
                out[i] = no_wallet(verdicts[i].payer_contractor_id)
            else:
                deciding.append(i)

        started = [to_datetime(calls[i].started_at) for i in deciding]
        decided_at = now_stamp()  # one decision time for the batch: its decisions commit together

        def decide(k: int, rate: asyncpg.Record | None) -> dict[str, Any] | None:
            i = deciding[k]
            try:
                return _decision_row(calls[i], verdicts[i], facts[i], started[k], rate, decided_at)
            except DomainError as err:
                out[i] = err
                return None

        fresh = await self._store.insert_decisions(
            [(calls[i].zip, started[k]) for k, i in enumerate(deciding)], decide
        )
        if fresh:
            self._on_event()
        return fresh

    async def settle_call(self, row: asyncpg.Record) -> asyncpg.Record:
        """Drives a stored decision to 'settled': capture (or charge) the payer, release every other hold."""
        settled, failed = await self.settle_calls([row])
        if row["call_id"] in failed:
            raise failed[row["call_id"]]
        return settled[row["call_id"]]

    async def settle_calls(
        self, rows: list[asyncpg.Record]
    ) -> tuple[dict[str, asyncpg.Record], dict[str, DomainError]]:
        """Drives stored decisions to 'settled' with one SettleCalls (the wallet captures each payer's hold on
        the call, else charges it by `call:<id>`, and releases every other hold) and one transaction here.
        Returns the settled rows and the refusals, by call id; a refused call stays 'settling'."""
        if not rows:
            return {}, {}
        items = [_settlement_item(r) for r in rows]
        try:
            results = await self._wallet.settle_calls(items)
        except DomainError as err:
            await self._store.note_failures([(r["call_id"], err.message) for r in rows])
            return {}, {r["call_id"]: err for r in rows}
        failed: dict[str, DomainError] = {}
        done: list[tuple[asyncpg.Record, wpb.CallSettlementResult]] = []
        for row, result in zip(rows, results, strict=True):
            if result.code:
                failed[row["call_id"]] = _settlement_refused(row, result)
            else:
                done.append((row, result))
        if failed:
            await self._store.note_failures([(k, e.message) for k, e in failed.items()])
        if not done:
            return {}, failed
        self._fault.crash_point()
        settled, charges = [], []
        for row, result in done:
            entry = result.entry if result.HasField("entry") else None
            how = "none" if entry is None else ("capture" if entry.kind == wpb.ENTRY_KIND_CAPTURE else "charge")
            reservation_id = ""
            if how == "capture":
                assert entry is not None  # how is "none" without an entry
                reservation_id = entry.reservation_id
            settled.append((row["call_id"], how, entry.entry_id if entry else None, reservation_id))
            if row["billable"]:
                # A billable call has a payer and a price (_settlement_item), so the wallet posted a capture or a
                # charge for it: a refusal went to failed above.
                assert entry is not None
                call = pb.FinishedCall.FromString(bytes(row["facts"]))
                charges.append({
                    "charge_id": charge_id(f"call:{row['call_id']}"), "contractor_id": row["payer_contractor_id"],
                    "kind": "call", "call_id": row["call_id"], "zip": row["zip"], "amount_cents": row["price_cents"],
                    "wallet_entry_id": entry.entry_id, "recording_uri": call.recording.uri,
                    "disclosure_played": call.recording.disclosure_played, "transcript_uri": call.transcript_uri,
                })
        return await self._store.finish_calls(settled, charges), failed

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
                    "scheduled_at": to_datetime(request.scheduled_at),
                    "appointment_at": (to_datetime(request.appointment_at)
                                       if request.HasField("appointment_at") else None),
                    "fee_cents": fee["fee_cents"], "fee_effective_from": fee["effective_from"],
                    "charge_id": charge_id(f"booking:{request.booking_id}"), "state": "settling",
                }

            stored = await self._store.insert_booking(to_datetime(request.scheduled_at), decide)
            fresh = stored is not None
            row = stored or await self._store.get_booking(request.booking_id)
            # insert_booking stores nothing only when the booking is there already, and bookings are never deleted.
            assert row is not None
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
        assert charge is not None  # refund_cases.charge_id references billing.charges, whose rows are never deleted
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
        if todo["calls"]:
            rows = await self._store.rated_calls(todo["calls"])
            settled, failed = await self.settle_calls([r for r in rows if r["state"] == "settling"])
            done += len(settled)
            for err in failed.values():
                log.warning("settlement still unfinished: %s", err.message)
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


def sweeper(settlement: Settlement, interval_s: float, older_than_s: float) -> Loop:
    """Re-drives unfinished settlements every interval_s."""
    return Loop("settlement sweeper", lambda: settlement.sweep_once(older_than_s),
                lambda: asyncio.sleep(interval_s))
