"""Who may call each WalletService method (checked by services/runtime/authz.py under mutual TLS).

Money moves only on the services' behalf: routing holds funds for a live call (Reserve) and frees them; billing
settles (Capture, SettleCalls, Charge) and refunds (Refund, after its refund desk decided). The gateway reaches
exactly what its own table exposes to contractors and operators (services/gateway/access.py). Operators read
everything and may credit a top-up by hand (with a reason: the gateway lets only operators, never contractors)
and set an alert; a refund goes through billing's refund desk
(RequestRefund/ResolveRefund), which keeps the case, never straight to the wallet.
"""

from services.runtime.authz import BILLING, GATEWAY, OPERATOR, ROUTING

ACCESS: dict[str, frozenset[str]] = {
    "TopUp": frozenset({GATEWAY, OPERATOR}),
    "GetWallet": frozenset({GATEWAY, OPERATOR, BILLING}),
    "ListEntries": frozenset({GATEWAY, OPERATOR, BILLING}),
    "Reserve": frozenset({ROUTING}),
    "Capture": frozenset({BILLING}),
    "Release": frozenset({ROUTING, BILLING}),
    "ListCallReservations": frozenset({BILLING, OPERATOR}),
    "Charge": frozenset({BILLING}),
    "SettleCalls": frozenset({BILLING}),
    "Refund": frozenset({BILLING}),
    "GetRoutability": frozenset({ROUTING, BILLING, OPERATOR}),
    "SetPauseThreshold": frozenset({ROUTING}),
    "SetLowBalanceAlert": frozenset({GATEWAY, OPERATOR}),
    # The web app's data and sign-in (the gateway finds whom a sign-in link is for by email).
    "SetContactEmail": frozenset({GATEWAY, OPERATOR}),
    "FindContractorsByEmail": frozenset({GATEWAY, OPERATOR}),
    "GetSpendForecast": frozenset({GATEWAY, OPERATOR}),
    # Money in (docs/payments.md): the gateway's contractor-facing card top-ups, card setups and auto top-up
    # settings (scoped to their own contractor_id by the gateway's table), and ApplyPaymentEvent, the gateway's
    # verified Stripe webhook; an operator may ask the wallet to ask Stripe about a payment by hand.
    "StartTopUp": frozenset({GATEWAY, OPERATOR}),
    "GetTopUp": frozenset({GATEWAY, OPERATOR}),
    "StartCardSetup": frozenset({GATEWAY, OPERATOR}),
    "SetAutoTopUp": frozenset({GATEWAY, OPERATOR}),
    "ApplyPaymentEvent": frozenset({GATEWAY, OPERATOR}),
}
