"""The wallet's records and words to its proto messages (proto to domain is done where a request is read)."""

from __future__ import annotations

from callersync.wallet.v1 import wallet_pb2 as pb
from services.runtime.errors import typed_reason
from services.runtime.timestamps import stamp
from services.wallet import forecast, ledger
from services.wallet.records import Entry, Reservation, Routability, TopUp, Wallet

KINDS = {
    "top_up": pb.ENTRY_KIND_TOP_UP,
    "capture": pb.ENTRY_KIND_CAPTURE,
    "charge": pb.ENTRY_KIND_CHARGE,
    "refund": pb.ENTRY_KIND_REFUND,
}
RESERVATION_STATES = {
    "open": pb.RESERVATION_STATE_OPEN,
    "captured": pb.RESERVATION_STATE_CAPTURED,
    "released": pb.RESERVATION_STATE_RELEASED,
    "expired": pb.RESERVATION_STATE_EXPIRED,
}
CREDIT_SOURCES = {
    "card": pb.CREDIT_SOURCE_CARD,
    "operator": pb.CREDIT_SOURCE_OPERATOR,
    "legacy": pb.CREDIT_SOURCE_LEGACY,
}
TOP_UP_STATES = {
    "requested": pb.TOP_UP_STATE_PENDING,
    "pending": pb.TOP_UP_STATE_PENDING,
    "requires_action": pb.TOP_UP_STATE_REQUIRES_ACTION,
    "credited": pb.TOP_UP_STATE_CREDITED,
    "failed": pb.TOP_UP_STATE_FAILED,
    "canceled": pb.TOP_UP_STATE_CANCELED,
    "refused": pb.TOP_UP_STATE_REFUSED,
}
ORIGINS = {"card": pb.TOP_UP_ORIGIN_CARD, "auto": pb.TOP_UP_ORIGIN_AUTO}
EVENT_OUTCOMES = {
    "credited": pb.PAYMENT_EVENT_OUTCOME_CREDITED,
    "already_credited": pb.PAYMENT_EVENT_OUTCOME_ALREADY_CREDITED,
    "recorded": pb.PAYMENT_EVENT_OUTCOME_RECORDED,
    "refused": pb.PAYMENT_EVENT_OUTCOME_REFUSED,
    "unknown": pb.PAYMENT_EVENT_OUTCOME_UNKNOWN,
    "card_saved": pb.PAYMENT_EVENT_OUTCOME_CARD_SAVED,
}
ROUTABILITY = {
    ledger.Routable.ROUTABLE: pb.ROUTABILITY_REASON_ROUTABLE,
    ledger.Routable.NO_WALLET: pb.ROUTABILITY_REASON_NO_WALLET,
    ledger.Routable.PAUSED: pb.ROUTABILITY_REASON_PAUSED,
    ledger.Routable.INSUFFICIENT_AVAILABLE: pb.ROUTABILITY_REASON_INSUFFICIENT_AVAILABLE,
}


def refusal(reason: str) -> pb.WalletRefusal.ValueType:
    """The typed form of an ErrorInfo reason (CallSettlementResult.refusal beside its reason)."""
    return pb.WalletRefusal.ValueType(typed_reason(pb.WalletRefusal, "WALLET_REFUSAL_", reason))


def entry(e: Entry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=e.entry_id,
        contractor_id=e.contractor_id,
        kind=KINDS[e.kind],
        amount_cents=e.amount_cents,
        balance_after_cents=e.balance_after_cents,
        idempotency_key=e.idempotency_key,
        reference=e.reference,
        description=e.description,
        refund_of_entry_id=e.refund_of_entry_id or 0,
        reservation_id=str(e.reservation_id) if e.reservation_id else "",
        created_at=stamp(e.created_at),
        # The stored functions' outcome rows carry no source: the only TOP_UP they write is an operator's credit.
        credit_source=CREDIT_SOURCES.get(e.credit_source or "operator", 0) if e.kind == "top_up" else 0,
    )


def top_up(t: TopUp) -> pb.TopUp:
    return pb.TopUp(
        top_up_id=str(t.top_up_id),
        contractor_id=t.contractor_id,
        origin=ORIGINS[t.origin],
        amount_cents=t.amount_cents,
        currency=t.currency,
        state=TOP_UP_STATES[t.state],
        payment_intent_id=t.payment_intent_id or "",
        failure_code=t.failure_code,
        failure_reason=t.failure_reason,
        entry_id=t.entry_id or 0,
        credited_cents=t.credited_cents or 0,
        card_brand=t.card_brand,
        card_last4=t.card_last4,
        created_at=stamp(t.created_at),
        updated_at=stamp(t.updated_at),
    )


def wallet(w: Wallet) -> pb.Wallet:
    auto = w.auto_top_up
    return pb.Wallet(
        contractor_id=w.contractor_id,
        balance_cents=w.balance_cents,
        reserved_cents=w.reserved_cents,
        available_cents=w.balance_cents - w.reserved_cents,
        paused=w.paused,
        pause_threshold_cents=w.pause_threshold_cents,
        low_balance_alert=pb.LowBalanceAlert(
            threshold_cents=w.alert_threshold_cents, email=w.alert_email, armed=w.alert_armed
        ),
        created_at=stamp(w.created_at),
        updated_at=stamp(w.updated_at),
        contact_email=w.contact_email,
        auto_top_up=pb.AutoTopUp(
            enabled=auto.enabled, threshold_cents=auto.threshold_cents,
            amount_cents=auto.amount_cents, max_per_day_cents=auto.max_per_day_cents,
            max_per_hour=auto.max_per_hour, card_brand=auto.card_brand,
            card_last4=auto.card_last4,
            consented_at=stamp(auto.consented_at) if auto.consented_at else None,
            consecutive_declines=auto.consecutive_declines, disabled_reason=auto.disabled_reason,
        ),
    )


def reservation(r: Reservation) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=str(r.reservation_id),
        contractor_id=r.contractor_id,
        call_id=r.call_id,
        amount_cents=r.amount_cents,
        state=RESERVATION_STATES[ledger.reservation_state(r.state, r.expires_at, r.now)],
        expires_at=stamp(r.expires_at),
        captured_cents=r.captured_cents or 0,
        capture_entry_id=r.capture_entry_id or 0,
    )


def routability(r: Routability, amount_cents: int) -> pb.Routability:
    reason = ledger.routability(r.found, r.paused, r.available_cents, amount_cents)
    return pb.Routability(
        contractor_id=r.contractor_id,
        routable=reason == ledger.Routable.ROUTABLE,
        reason=ROUTABILITY[reason],
        available_cents=r.available_cents,
        balance_cents=r.balance_cents,
        pause_threshold_cents=r.pause_threshold_cents,
    )


def spend_forecast(w: Wallet, found: forecast.Forecast) -> pb.SpendForecast:
    return pb.SpendForecast(
        contractor_id=w.contractor_id,
        balance_cents=w.balance_cents,
        pause_threshold_cents=w.pause_threshold_cents,
        lookback_days=found.lookback_days,
        lookback_spent_cents=found.lookback_spent_cents,
        average_daily_spend_cents=found.average_daily_spend_cents,
        headroom_cents=found.headroom_cents,
        runway_days=found.runway_days,
        paused=w.paused,
        days=[pb.DailySpend(date=d.date.isoformat(), spent_cents=d.spent_cents, debit_count=d.debit_count,
                            refunded_cents=d.refunded_cents, topped_up_cents=d.topped_up_cents)
              for d in found.days],
    )
