"""Who may call each RoutingService method (checked by services/runtime/authz.py under mutual TLS).

Only the telephony engine routes live calls (RouteCall, NextCandidate: each reserves a contractor's money). The
gateway reaches exactly what its own table exposes (services/gateway/access.py); operators manage claims,
settings and the caller blocklist and read everything.
"""

from services.runtime.authz import ENGINE, GATEWAY, OPERATOR

_PEOPLE = frozenset({GATEWAY, OPERATOR})

ACCESS: dict[str, frozenset[str]] = {
    "ClaimZip": _PEOPLE,
    "ReleaseZip": _PEOPLE,
    "ListClaims": _PEOPLE,
    "SetMode": _PEOPLE,
    "SetSchedule": _PEOPLE,
    "SetCaps": _PEOPLE,
    "GetRoutingProfile": _PEOPLE,
    "RouteCall": frozenset({ENGINE}),
    "NextCandidate": frozenset({ENGINE}),
    "BlockCaller": _PEOPLE,
    "UnblockCaller": _PEOPLE,
    "ListBlockedCallers": _PEOPLE,
    "ListMissedCalls": _PEOPLE,
}
