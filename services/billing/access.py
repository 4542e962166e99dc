"""Who may call each BillingService method (checked by services/runtime/authz.py under mutual TLS).

Only the telephony engine reports finished calls and bookings (RateCall, RateCalls, RecordBooking): those
charge contractors. Routing reads the rate card and asks for billing's events again after Redis lost them. The gateway
reaches exactly what its own table exposes (services/gateway/access.py). Operators price ZIPs and the booking
fee, read everything and work the refund desk.
"""

from services.runtime.authz import ENGINE, GATEWAY, OPERATOR, ROUTING

ACCESS: dict[str, frozenset[str]] = {
    "SetZipRate": frozenset({GATEWAY, OPERATOR}),
    "SetBookingFee": frozenset({GATEWAY, OPERATOR}),
    "GetRateCard": frozenset({GATEWAY, OPERATOR, ROUTING}),
    "RateCall": frozenset({ENGINE}),
    "RateCalls": frozenset({ENGINE}),
    "RecordBooking": frozenset({ENGINE}),
    "ExplainCall": frozenset({GATEWAY, OPERATOR}),
    "RequestRefund": frozenset({GATEWAY, OPERATOR}),
    "ResolveRefund": frozenset({GATEWAY, OPERATOR}),
    "GetRefundCase": frozenset({GATEWAY, OPERATOR}),
    "ListRefundCases": frozenset({GATEWAY, OPERATOR}),
    "ListCharges": frozenset({GATEWAY, OPERATOR}),
    "ListContractorCalls": frozenset({GATEWAY, OPERATOR}),
    "GetContractorCallStats": frozenset({GATEWAY, OPERATOR}),
    # Re-queues events for routing's consumer: routing's own recovery path, and the on-call runbook's
    # (docs/operations.md) for a consumer that missed events; consumers deduplicate by event id.
    "ReplayEvents": frozenset({ROUTING, OPERATOR}),
}
