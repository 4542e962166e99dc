"""Crediting an approved refund case back to the wallet, once."""

from __future__ import annotations

from callersync.billing.v1 import events_pb2
from services.billing import events
from services.billing.clients import WalletClient, WalletRefused
from services.billing.records import RefundCase
from services.billing.storage import BillingStore
from services.runtime.errors import DomainError, FailedPrecondition
from services.runtime.fault import FaultHook


class RefundCredit:
    def __init__(self, store: BillingStore, wallet: WalletClient, fault: FaultHook, on_event) -> None:
        self._store = store
        self._wallet = wallet
        self._fault = fault
        self._on_event = on_event  # nudges the outbox relay: a CallerBlockRequested event is waiting

    async def credit_refund(self, case: RefundCase) -> RefundCase:
        """Credits an approved case once (key `refund:<case id>`); an approved spam case also asks routing to
        block the caller, in the same transaction that records the credit."""
        case_id = case.refund_case_id
        charge = await self._store.get_charge(case.charge_id)
        assert charge is not None  # refund_cases.charge_id references billing.charges, whose rows are never deleted
        try:
            entry = await self._wallet.refund(
                charge.wallet_entry_id, case.amount_cents, f"refund:{case_id}",
                f"refund case {case_id} ({case.reason}) on charge {charge.charge_id}",
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
        if case.reason == "REFUND_REASON_SPAM":
            rated = await self._store.get_rated_call(charge.call_id)
            event = events.payload(events_pb2.BillingEvent(caller_block_requested=events_pb2.CallerBlockRequested(
                caller_number=rated.caller_number if rated else "", refund_case_id=case_id,
                contractor_id=charge.contractor_id, call_id=charge.call_id, reviewer=case.reviewer,
            )))
        self._fault.crash_point()
        row = await self._store.finish_refund(case_id, entry.entry_id, event)
        if event is not None:
            self._on_event()
        return row
