"""A rated call as it concerns one contractor: did they pay, and if not, which rule spared them."""

from __future__ import annotations

import datetime as dt

from callersync.billing.v1 import billing_pb2 as pb
from services.billing.policy import leg_words
from services.billing.records import RatedCall
from services.runtime.errors import InvalidArgument
from services.runtime.money import dollars
from services.runtime.timestamps import stamp

DEFAULT_DAYS, MAX_DAYS = 30, 366


def for_contractor(rated: RatedCall, contractor_id: str) -> pb.ContractorCall:
    decision = pb.RatingDecision.FromString(rated.decision)
    payer = rated.billable and rated.payer_contractor_id == contractor_id
    mine = [leg for leg in decision.legs if leg.contractor_id == contractor_id]
    if payer and decision.HasField("leg_index"):
        leg = next((x for x in mine if x.leg_index == decision.leg_index), None)
    else:  # their longest leg (a call rarely rings one contractor twice), else their last
        leg = max(reversed(mine), key=lambda x: x.connected_ms, default=None)
    rule = decision.rule if payer or leg is None else leg.rule
    connected = leg.connected_ms if leg is not None else 0
    if payer:
        words = f"Billable: {leg_words(rule, connected)}; you paid {dollars(rated.price_cents)}."
    elif leg is not None:
        words = f"Free for you: {leg_words(rule, connected)}."
        if rated.billable:
            words += " Another contractor answered and paid for the call."
    else:
        words = "Free for you: this call did not ring you."
    return pb.ContractorCall(
        call_id=rated.call_id, zip=rated.zip, started_at=stamp(rated.started_at), billable=payer,
        rule=rule, explanation=words, connected_ms=connected, payer=payer,
        charged_cents=rated.price_cents if payer else 0, charge_id=decision.charge_id if payer else "",
        call_billable=rated.billable,
    )


def stats_period(days: int, today: dt.date) -> tuple[dt.date, int]:
    """(first UTC day, number of days) for GetContractorCallStats: today and the days before it."""
    if days < 0 or days > MAX_DAYS:
        raise InvalidArgument(f"days must be between 1 and {MAX_DAYS} (0 means {DEFAULT_DAYS}); got {days}",
                              field="days")
    days = days or DEFAULT_DAYS
    return today - dt.timedelta(days=days - 1), days
