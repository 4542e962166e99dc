"""Who may call what through the gateway: the one table, and the check every request passes.

Operators may call everything. A contractor token reaches only that contractor's resources: every field
named `contractor_id` (or `contractor_ids`) anywhere in the request must equal the token's contractor_id,
whatever the path, body or query said; an empty top-level `contractor_id` is filled with the token's, so
"list refund cases" from a contractor lists theirs, never everyone's.

A few list calls can also be keyed by something shared between contractors (ListClaims by ZIP): a contractor
may ask, and the answer keeps the shape (how many claims, which positions are taken, their own place in the
cascade) with every other contractor's id blanked, so a ZIP's competition is visible, never who it is. The same
blanking applies to every answer a contractor gets (ClaimZip returns the ZIP's cascade, too).

A call keyed only by ids the gateway cannot map to a contractor (a call id, a refund case id, a caller
number) is refused to contractors unless it is listed here as CONTRACTOR_SAFE: it carries no contractor's
data. A newly annotated RPC that is not in the table is operator-only until someone decides otherwise.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.gateway.bindings import Binding
from services.gateway.tokens import Principal

CONTRACTOR_FIELDS = ("contractor_id", "contractor_ids")


class Access(enum.Enum):
    OPERATOR = "operators only"
    OWN = "a contractor for their own contractor_id; operators for any"
    SAFE = "any authenticated role: the answer holds no contractor's data"
    OWN_OR_ANONYMISED = ("a contractor for their own contractor_id, or by another key with every other "
                         "contractor's id blanked in the answer; operators for any")


# Fields that page a list rather than key it: a request with nothing else set is scoped to the contractor.
PAGING_FIELDS = ("page_size", "page_token")


POLICY: dict[str, Access] = {
    # wallet: the contractor's own money.
    # A manual credit is an operator's, with a reason: a contractor pays by card (StartTopUp). Nobody mints money.
    "callersync.wallet.v1.WalletService.TopUp": Access.OPERATOR,
    "callersync.wallet.v1.WalletService.StartTopUp": Access.OWN,
    "callersync.wallet.v1.WalletService.GetTopUp": Access.OWN,
    "callersync.wallet.v1.WalletService.StartCardSetup": Access.OWN,
    "callersync.wallet.v1.WalletService.SetAutoTopUp": Access.OWN,
    "callersync.wallet.v1.WalletService.GetWallet": Access.OWN,
    "callersync.wallet.v1.WalletService.ListEntries": Access.OWN,
    "callersync.wallet.v1.WalletService.SetLowBalanceAlert": Access.OWN,
    "callersync.wallet.v1.WalletService.SetContactEmail": Access.OWN,
    "callersync.wallet.v1.WalletService.GetSpendForecast": Access.OWN,
    # billing: prices are public to contractors; setting them and resolving refunds is for operators.
    "callersync.billing.v1.BillingService.SetZipRate": Access.OPERATOR,
    "callersync.billing.v1.BillingService.SetBookingFee": Access.OPERATOR,
    "callersync.billing.v1.BillingService.GetRateCard": Access.SAFE,
    # A contractor's request carries their contractor_id, and billing answers only about calls that concern it.
    "callersync.billing.v1.BillingService.ExplainCall": Access.OWN,
    # Billing also checks that the charge belongs to contractor_id.
    "callersync.billing.v1.BillingService.RequestRefund": Access.OWN,
    "callersync.billing.v1.BillingService.ResolveRefund": Access.OPERATOR,
    "callersync.billing.v1.BillingService.ListRefundCases": Access.OWN,
    # A contractor's request carries their contractor_id, and billing answers only with a case of theirs.
    "callersync.billing.v1.BillingService.GetRefundCase": Access.OWN,
    "callersync.billing.v1.BillingService.ListCharges": Access.OWN,
    # The calls that rang the contractor (free ones too) and their per-day counts: their own only.
    "callersync.billing.v1.BillingService.ListContractorCalls": Access.OWN,
    "callersync.billing.v1.BillingService.GetContractorCallStats": Access.OWN,
    # routing: a contractor's claims and settings are theirs; the blocklist is the operators'.
    "callersync.routing.v1.RoutingService.ClaimZip": Access.OWN,
    "callersync.routing.v1.RoutingService.ReleaseZip": Access.OWN,
    # By ZIP: whether it is claimed and the contractor's own position, not competitors' ids.
    "callersync.routing.v1.RoutingService.ListClaims": Access.OWN_OR_ANONYMISED,
    "callersync.routing.v1.RoutingService.SetMode": Access.OWN,
    "callersync.routing.v1.RoutingService.SetSchedule": Access.OWN,
    "callersync.routing.v1.RoutingService.SetCaps": Access.OWN,
    "callersync.routing.v1.RoutingService.GetRoutingProfile": Access.OWN,
    "callersync.routing.v1.RoutingService.ListMissedCalls": Access.OWN,
    "callersync.routing.v1.RoutingService.BlockCaller": Access.OPERATOR,
    "callersync.routing.v1.RoutingService.UnblockCaller": Access.OPERATOR,
    "callersync.routing.v1.RoutingService.ListBlockedCallers": Access.OPERATOR,
}


# Called by the gateway on its own behalf, never for a user's request and not on any HTTP route: the web app's
# sign-in asks the wallet whose address an email is (services/gateway/web/auth_pages.py).
GATEWAY_OWN_CALLS = frozenset({"callersync.wallet.v1.WalletService.FindContractorsByEmail"})


class Forbidden(Exception):
    """The token is genuine but does not reach this resource: 403."""


def access_of(binding: Binding) -> Access:
    return POLICY.get(binding.full_name, Access.OPERATOR)


def check_policy(bindings: Iterable[Binding]) -> None:
    """Fails at start if an OWN method's request has no top-level contractor_id to scope it by."""
    for binding in bindings:
        if (
            access_of(binding) in (Access.OWN, Access.OWN_OR_ANONYMISED)
            and "contractor_id" not in binding.method.input_type.fields_by_name
        ):
            raise ValueError(f"{binding.full_name} is contractor-scoped but its request has no contractor_id")


def _contractor_ids(message: Message) -> Iterator[str]:
    """Every value of a contractor id field anywhere in the message (set fields only)."""
    for field, value in message.ListFields():
        repeated = field.is_repeated
        if field.name in CONTRACTOR_FIELDS and field.type == FieldDescriptor.TYPE_STRING:
            yield from (value if repeated else [value])
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                items = value.values()
                if field.message_type.fields_by_name["value"].message_type is None:
                    continue
            else:
                items = value if repeated else [value]
            for item in items:
                yield from _contractor_ids(item)


def authorize(principal: Principal, binding: Binding, request: Message) -> None:
    """Raises Forbidden unless the principal may make this request; scopes an empty contractor_id."""
    if principal.is_operator:
        return
    access = access_of(binding)
    if access is Access.OPERATOR:
        raise Forbidden(f"{binding.method.name} is for operators")
    # A Message has no declared fields; check_policy refused at start any OWN method whose request lacks a
    # top-level contractor_id.
    scoped: Any = request
    if access is Access.OWN and not scoped.contractor_id:
        scoped.contractor_id = principal.contractor_id
    if access is Access.OWN_OR_ANONYMISED and not scoped.contractor_id and not any(
        field.name not in PAGING_FIELDS for field, _ in request.ListFields()
    ):
        scoped.contractor_id = principal.contractor_id
    for contractor_id in _contractor_ids(request):
        if contractor_id != principal.contractor_id:
            raise Forbidden(
                f"{binding.method.name}: this token reaches only contractor {principal.contractor_id}"
            )


def anonymise(principal: Principal, binding: Binding, reply: Message) -> None:
    """Blanks every contractor id but the principal's in any answer to a contractor: a by-ZIP ListClaims, and
    also ClaimZip's zip_claims (the ZIP's cascade after the change), which a contractor reaches for their own
    claim."""
    if principal.is_operator:
        return
    _blank_others(reply, principal.contractor_id)


def _blank_others(message: Message, keep: str) -> None:
    for field, value in message.ListFields():
        if field.name in CONTRACTOR_FIELDS and field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                kept = [v for v in value if v == keep]
                del value[:]
                value.extend(kept)
            elif value != keep:
                message.ClearField(field.name)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in value if field.is_repeated else [value]:
                _blank_others(item, keep)
