"""RecordBooking: an AI agent's booked appointment is charged the booking fee in effect at scheduled_at, once."""

from __future__ import annotations

from typing import Any

from callersync.billing.v1 import billing_pb2 as pb
from services.billing.charge_ids import charge_id
from services.billing.clients import WalletClient
from services.billing.facts import facts_hash
from services.billing.records import Booking
from services.billing.single_flight import SingleFlight
from services.billing.storage import BillingStore
from services.runtime.errors import AlreadyExists, DomainError
from services.runtime.fault import FaultHook
from services.runtime.timestamps import to_datetime


class Bookings:
    def __init__(self, store: BillingStore, wallet: WalletClient, fault: FaultHook) -> None:
        self._store = store
        self._wallet = wallet
        self._fault = fault
        self._single_flight = SingleFlight()

    async def record(self, request: pb.RecordBookingRequest) -> tuple[Booking, bool]:
        """The stored (and charged) booking, and whether it was recorded before this request."""
        fp = facts_hash(request)
        (fresh, row), shared = await self._single_flight.run(
            f"booking:{request.booking_id}", lambda: self._record(request, fp)
        )
        if row.facts_hash != fp:
            raise AlreadyExists(
                f"booking {request.booking_id!r} was already recorded with other details (call {row.call_id}, "
                f"contractor {row.contractor_id}); a booking is charged once. Send the original details to "
                "get it back.",
                reason="BOOKING_RECORDED_WITH_OTHER_FACTS", booking_id=request.booking_id,
            )
        return row, shared or not fresh

    async def _record(self, request: pb.RecordBookingRequest, fp: bytes) -> tuple[bool, Booking]:
        row = await self._store.get_booking(request.booking_id)
        if row is None:
            await self._wallet.require_wallet(request.contractor_id)

            def decide(fee_cents: int, fee_from) -> dict[str, Any]:
                return {
                    "booking_id": request.booking_id, "facts_hash": fp, "call_id": request.call_id,
                    "contractor_id": request.contractor_id,
                    "scheduled_at": to_datetime(request.scheduled_at),
                    "appointment_at": (to_datetime(request.appointment_at)
                                       if request.HasField("appointment_at") else None),
                    "fee_cents": fee_cents, "fee_effective_from": fee_from,
                    "charge_id": charge_id(f"booking:{request.booking_id}"), "state": "settling",
                }

            stored = await self._store.insert_booking(to_datetime(request.scheduled_at), decide)
            fresh = stored is not None
            row = stored or await self._store.get_booking(request.booking_id)
            # insert_booking stores nothing only when the booking is there already, and bookings are never deleted.
            assert row is not None
        else:
            fresh = False
        if row.facts_hash == fp and row.state == "settling":
            row = await self.settle(row)
        return fresh, row

    async def settle(self, row: Booking) -> Booking:
        """Charges the fee by `booking:<id>` and records the charge; a retry or the sweeper replays the key."""
        booking_id = row.booking_id
        try:
            entry = await self._wallet.charge(
                row.contractor_id, row.fee_cents, f"booking:{booking_id}", booking_id,
                f"AI agent booked appointment {booking_id} on call {row.call_id}",
            )
        except DomainError as err:
            await self._store.note_failure("bookings", "booking_id", booking_id, err.message)
            raise
        self._fault.crash_point()
        # The AI call's recording and transcript, when that call was reported, are the booking's evidence.
        rated = await self._store.get_rated_call(row.call_id)
        call = pb.FinishedCall.FromString(rated.facts) if rated else pb.FinishedCall()
        return await self._store.finish_booking(booking_id, entry.entry_id, {
            "charge_id": row.charge_id, "contractor_id": row.contractor_id, "kind": "booking",
            "call_id": row.call_id, "booking_id": booking_id, "zip": call.zip, "amount_cents": row.fee_cents,
            "wallet_entry_id": entry.entry_id, "charged_at": row.scheduled_at,
            "recording_uri": call.recording.uri, "disclosure_played": call.recording.disclosure_played,
            "transcript_uri": call.transcript_uri,
        })
