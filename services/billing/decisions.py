"""A rated call's decision row, built before any money moves, and the refusal of a call re-sent with other facts.

Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from callersync.billing.v1 import billing_pb2 as pb
from callersync.billing.v1 import events_pb2
from services.billing import events, policy
from services.billing.charge_ids import charge_id
from services.billing.facts import facts_hash
from services.billing.records import RatedCall
from services.runtime.errors import AlreadyExists, FailedPrecondition


def rated_with_other_facts(call_id: str, stored: RatedCall) -> AlreadyExists:
    return AlreadyExists(
        f"call {call_id!r} was already rated with other facts (at {stored.decided_at.isoformat()}: "
        f"{'billable' if stored.billable else 'free'}); a finished call is rated once and never re-rated. "
        "Send the original facts to get the stored decision, or ExplainCall to read it.",
        reason="CALL_RATED_WITH_OTHER_FACTS", call_id=call_id,
    )


def decision_row(call: pb.FinishedCall, verdict: policy.Verdict, facts: bytes, started_at: dt.datetime,
                 rate: tuple[int, dt.datetime] | None, decided_at: Timestamp) -> dict[str, Any]:
    """The decision to store in state 'settling' (with its CallRated event under "event"), priced at the
    rate (cents, effective from) in effect when the call started; a ZIP without one refuses the call."""
    if rate is None:
        raise FailedPrecondition(
            f"ZIP {call.zip} had no rate in effect when call {call.call_id} started "
            f"({started_at.isoformat()}); set one with SetZipRate effective "
            "on or before that moment, then send the call again (nothing was recorded)",
            reason="ZIP_NOT_PRICED", zip=call.zip,
        )
    rate_cents, rate_from = rate
    the_charge = charge_id(f"call:{call.call_id}") if verdict.billable else ""
    decision = policy.decision_message(call, verdict, rate_cents, rate_from, the_charge)
    decision.decided_at.CopyFrom(decided_at)
    return {
        "call_id": call.call_id, "facts_hash": facts_hash(call, facts), "facts": facts,
        "zip": call.zip, "caller_number": call.caller_number,
        "started_at": started_at, "billable": verdict.billable,
        "rule": pb.DecisionRule.Name(verdict.rule), "payer_contractor_id": verdict.payer_contractor_id,
        "price_cents": decision.price_cents, "decision": decision.SerializeToString(deterministic=True),
        # Which hold pays is the wallet's to find (the payer's on this call) and is recorded at settlement.
        "capture_reservation_id": "", "state": "settling",
        # Who the call rang, for the per-contractor call list (billing.call_contractors), written alongside.
        "contractors": sorted({leg.contractor_id for leg in call.legs}),
        "event": events.payload(events_pb2.BillingEvent(call_rated=events_pb2.CallRated(
            call_id=call.call_id, zip=call.zip, billable=verdict.billable, rule=verdict.rule,
            payer_contractor_id=verdict.payer_contractor_id, connected_ms=verdict.connected_ms,
            price_cents=decision.price_cents, started_at=call.started_at,
            rung_contractor_ids=[leg.contractor_id for leg in call.legs],
        ))),
    }
