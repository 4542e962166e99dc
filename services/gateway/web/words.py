"""The API's enums and figures in plain words: "you" to the contractor, the contractor's id to an operator."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.gateway.web.render import money, seconds


@dataclasses.dataclass(frozen=True)
class Person:
    """Whom a sentence is about, as its reader names them (the templates below take these as fields)."""

    you: str
    your: str
    you_were: str


YOU = Person("you", "your", "you were")


def named(who: str) -> Person:
    return Person(who, f"{who}'s", f"{who} was")


def about(leg_contractor_id: str, contractor_id: str, *, operator: bool) -> Person:
    """A leg's contractor as the reader names them: an operator reads ids, a contractor reads "you" for their own
    leg and no one else's id."""
    if operator:
        return named(leg_contractor_id or "the contractor")
    return YOU if leg_contractor_id == contractor_id else named("another contractor")


RULES = {
    "DECISION_RULE_BILLABLE_CONNECTED_30S": "Billable: a person answered and {you_were} connected 30 seconds or more",
    "DECISION_RULE_BILLABLE_DROPPED_AFTER_30S": "Billable: connected 30 seconds or more, then the line dropped",
    "DECISION_RULE_FREE_NO_ANSWER": "Free: nobody answered",
    "DECISION_RULE_FREE_VOICEMAIL": "Free: voicemail or an answering machine took the call",
    "DECISION_RULE_FREE_UNDER_30S": "Free: connected for less than 30 seconds",
    "DECISION_RULE_FREE_CASCADED_PAST": "Free: {you} missed the ring and the call moved on",
    "DECISION_RULE_FREE_AI_MODE": "Free: handled by {your} AI agent (billed per booking instead)",
    "DECISION_RULE_FREE_NO_LEGS": "Free: nobody was rung",
    "DECISION_RULE_FREE_ONE_CHARGE_PER_CALL": "Free: another leg of this call already pays",
}

HANGUP = {
    "HANGUP_SIDE_CALLER": "the homeowner hung up",
    "HANGUP_SIDE_CONTRACTOR": "{you} hung up",
    "HANGUP_SIDE_NETWORK": "the line dropped",
    "HANGUP_SIDE_ENGINE": "ringing stopped (ring timeout)",
    "HANGUP_SIDE_UNSPECIFIED": "not known",
}

ANSWERED = {
    "ANSWERED_BY_NONE": "nobody",
    "ANSWERED_BY_PERSON": "a person",
    "ANSWERED_BY_VOICEMAIL": "voicemail",
    "ANSWERED_BY_AI_AGENT": "{your} AI agent",
    "ANSWERED_BY_UNSPECIFIED": "not known",
}

# (label, tone) for each refund state: the words carry the meaning, the tone only colours them.
REFUND_STATES = {
    "REFUND_STATE_PENDING_REVIEW": ("Waiting for review", "wait"),
    "REFUND_STATE_APPROVED": ("Refunded", "good"),
    "REFUND_STATE_DENIED": ("Declined by an operator", "bad"),
    "REFUND_STATE_REJECTED_INELIGIBLE": ("Not refundable by policy", "bad"),
    "REFUND_STATE_REJECTED_NOT_DUPLICATE": ("No double bill found in the ledger", "bad"),
    "REFUND_STATE_REJECTED_OUT_OF_WINDOW": ("Asked after the refund window closed", "bad"),
}

# The product's refund table, shown before a contractor submits.
REFUND_REASONS = [
    ("REFUND_REASON_SPAM", "Spam call that got through the filters",
     "Eligible. An operator reviews the recording and transcript; on approval the caller is blocked."),
    ("REFUND_REASON_DOUBLE_BILL", "Double bill: the same call or booking charged twice",
     "Eligible. Checked against the ledger and decided at once."),
    ("REFUND_REASON_SYSTEM_BUG", "System bug", "Eligible. An operator reviews."),
    ("REFUND_REASON_DID_NOT_CLOSE_SALE", "I didn't close the sale",
     "Not eligible: a sales question, not a billing one. The request is declined at once."),
    ("REFUND_REASON_CUSTOMER_NOT_SERVED", "I didn't end up serving the customer",
     "Not eligible when the reason is outside the platform. The request is declined at once."),
    ("REFUND_REASON_SERVICE_QUALITY_DISPUTE", "A dispute with the homeowner about the work",
     "Not eligible: between you and the homeowner. The request is declined at once."),
]
REASON_LABELS = {code: label for code, label, _ in REFUND_REASONS}


def _said(table: dict[str, str], code: str, who: Person, default: str) -> str:
    return table[code].format(**dataclasses.asdict(who)) if code in table else default


def rule(code: str, who: Person = YOU, default: str = "—") -> str:
    return _said(RULES, code, who, default)


def hangup(code: str, who: Person = YOU) -> str:
    return _said(HANGUP, code, who, "not known")


def answered_by(code: str, who: Person = YOU) -> str:
    return _said(ANSWERED, code, who, "")


def decision(d: dict[str, Any], who: Person = YOU) -> str:
    rule_words = rule(d.get("rule", ""), who, "Not rated yet")
    figures = f"; connected {seconds(d.get('connectedMs'))}" if int(d.get("connectedMs") or 0) else ""
    leg = d.get("legIndex")
    which = f", leg {int(leg) + 1}" if leg is not None else ""
    price = f"; {money(d.get('priceCents'))} at the ZIP's rate" if d.get("billable") else ""
    return f"{rule_words}{figures}{which}{price}."


def refund_state(case: dict[str, Any] | None) -> tuple[str, str]:
    if not case:
        return ("No refund requested", "info")
    return REFUND_STATES.get(case.get("state", ""), ("Unknown", "info"))
