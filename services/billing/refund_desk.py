"""Refund cases end to end: triage on arrival, the operator's verdict, and the credit that follows approval."""

from __future__ import annotations

import uuid

from callersync.billing.v1 import billing_pb2 as pb
from services.billing import mappers, refunds
from services.billing.clients import WalletClient
from services.billing.facts import facts_hash
from services.billing.records import Charge, RefundCase
from services.billing.refund_credit import RefundCredit
from services.billing.storage import BillingStore
from services.runtime import paging
from services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.runtime.validation import require_id

# How far back the double-bill check reads a contractor's ledger (pages of 500 entries).
LEDGER_PAGES = 4
# The rolling window over which automatic approvals of undefendable charges are counted.
ALLOWANCE_WINDOW_DAYS = 30


class RefundDesk:
    def __init__(self, store: BillingStore, wallet: WalletClient, settlement: RefundCredit, window_days: int,
                 auto_approvals: int, second_approval_cents: int) -> None:
        self._auto_approvals = auto_approvals
        self._second_approval_cents = second_approval_cents
        self._store = store
        self._wallet = wallet
        self._settlement = settlement
        self._window_days = window_days

    async def request(self, request: pb.RequestRefundRequest) -> RefundCase:
        refunds.validate_request(request.contractor_id, request.charge_id, request.reason, request.note,
                                 request.amount_cents, request.idempotency_key)
        fp = facts_hash(request)
        earlier = await self._store.case_by_key(request.idempotency_key)
        if earlier is not None:
            return await self._replay(earlier, fp)
        charge = await self._store.get_charge(request.charge_id)
        if charge is None or charge.contractor_id != request.contractor_id:
            raise NotFound(f"contractor {request.contractor_id!r} has no charge {request.charge_id!r}; "
                           "ListCharges shows their charges", reason="NO_CHARGE")
        live = await self._store.live_case(charge.charge_id)
        if live is not None:
            what = "was already refunded by" if live.state == "approved" else "already waits for review in"
            raise FailedPrecondition(
                f"charge {charge.charge_id} {what} refund case {live.refund_case_id}; a charge is refunded "
                "at most once", reason="REFUND_CASE_EXISTS", refund_case_id=live.refund_case_id,
            )
        amount = refunds.refund_amount(request.amount_cents, charge.amount_cents, charge.refunded_cents)
        duplicates: list[int] = []
        if request.reason == pb.REFUND_REASON_DOUBLE_BILL:
            duplicates = await self._duplicates(charge)
        # One clock reading for the whole decision: the case is requested, and when decided at once resolved, at
        # this moment (two readings in two transactions put resolved_at before requested_at).
        now = await self._store.now()
        verdict = refunds.triage(
            request.reason, charge.charged_at, now, self._window_days,
            charge.kind == "call", bool(charge.recording_uri), bool(charge.transcript_uri),
            bool(duplicates) if request.reason == pb.REFUND_REASON_DOUBLE_BILL else None,
        )

        def case(triaged: refunds.Triage, duplicate_of: str) -> dict:
            approved = triaged.state == "approved"
            return {
                "refund_case_id": str(uuid.uuid4()), "idempotency_key": request.idempotency_key, "request_hash": fp,
                "charge_id": charge.charge_id, "contractor_id": request.contractor_id,
                "reason": pb.RefundReason.Name(request.reason), "note": request.note, "state": triaged.state,
                "amount_cents": amount, "recording_uri": charge.recording_uri,
                "disclosure_played": charge.disclosure_played, "transcript_uri": charge.transcript_uri,
                "duplicate_of_charge_id": duplicate_of if approved else "",
                "resolution_note": triaged.resolution_note, "auto_resolved": triaged.auto_resolved,
                "credit_state": "settling" if approved else "none",
                "requested_at": now,
                "resolved_at": now if triaged.state != "pending_review" else None,
            }

        if verdict.undefendable:
            held = case(refunds.allowance_exhausted(self._auto_approvals, ALLOWANCE_WINDOW_DAYS), "")
            row = await self._store.insert_case_within_allowance(
                case(verdict, ""), held, self._auto_approvals, ALLOWANCE_WINDOW_DAYS)
        else:
            row = await self._store.insert_case(case(verdict, await self._duplicate_name(duplicates)))
        if row is None:  # a concurrent request took the key or the charge's one live case first
            earlier = await self._store.case_by_key(request.idempotency_key)
            if earlier is not None:
                return await self._replay(earlier, fp)
            return await self.request(request)
        if row.state == "approved":
            row = await self._settlement.credit_refund(row)
        return row

    async def _replay(self, case: RefundCase, fp: bytes) -> RefundCase:
        if bytes(case.request_hash) != fp:
            raise AlreadyExists(
                f"idempotency key {case.idempotency_key!r} already opened refund case {case.refund_case_id} "
                "for a different request; use a new key for a new request", reason="IDEMPOTENCY_KEY_REUSED",
            )
        if case.credit_state == "settling":
            return await self._settlement.credit_refund(case)
        return case

    async def _duplicates(self, charge: Charge) -> list[int]:
        """Other wallet debits for the same call or booking: the ledger is the proof of a double bill."""
        references = {charge.booking_id} if charge.kind == "booking" else {charge.call_id}
        captured: set[int] = set()
        if charge.kind == "call":
            for r in await self._wallet.call_reservations(charge.call_id):
                if r.contractor_id == charge.contractor_id and r.capture_entry_id:
                    captured.add(r.capture_entry_id)
                    references.add(r.reservation_id)
        entries = await self._wallet.entries(charge.contractor_id, LEDGER_PAGES)
        return refunds.duplicate_entries(charge.wallet_entry_id, references, entries, captured)

    async def _duplicate_name(self, entry_ids: list[int]) -> str:
        if not entry_ids:
            return ""
        return f"wallet-entry-{entry_ids[0]}"

    async def resolve(self, request: pb.ResolveRefundRequest, acting: str = "") -> RefundCase:
        if not request.refund_case_id:
            raise InvalidArgument("refund_case_id is required", field="refund_case_id")
        if request.resolution not in (pb.REFUND_RESOLUTION_APPROVE, pb.REFUND_RESOLUTION_DENY):
            raise InvalidArgument("resolution must be REFUND_RESOLUTION_APPROVE or REFUND_RESOLUTION_DENY",
                                  field="resolution")
        # The second-approval rule counts people: an identified caller (the gateway's signed-in person, an
        # operator's certificate) is the reviewer, and may not type another name.
        reviewer = request.reviewer or acting
        if not reviewer:
            raise InvalidArgument("reviewer is required: who decided, for the audit trail", field="reviewer")
        if acting and reviewer != acting:
            raise InvalidArgument(f"reviewer must be you ({acting!r}) or empty, not {request.reviewer!r}: a decision "
                                  "is recorded under the name of who made it", reason="REVIEWER_NOT_CALLER",
                                  field="reviewer")
        if len(request.note) > refunds.MAX_NOTE_LEN:
            raise InvalidArgument(f"note must be at most {refunds.MAX_NOTE_LEN} characters", field="note")
        wanted = "approved" if request.resolution == pb.REFUND_RESOLUTION_APPROVE else "denied"
        case = await self._store.get_case(request.refund_case_id)
        if case is None:
            raise NotFound(f"no refund case {request.refund_case_id!r}", reason="NO_REFUND_CASE")
        if request.amount_cents and wanted != "approved":
            raise InvalidArgument("amount_cents goes with REFUND_RESOLUTION_APPROVE only (approve in part)",
                                  field="amount_cents")
        if case.state == "pending_review":
            amount = None
            if wanted == "approved":
                amount = request.amount_cents or case.first_approved_cents or case.amount_cents
                if not 1 <= amount <= case.amount_cents:
                    raise InvalidArgument(f"amount_cents must be 1 to {case.amount_cents} (what the contractor "
                                          "asked); 0 approves all of it", field="amount_cents")
                step = refunds.approval_step(self._second_approval_cents, amount, case.first_approver,
                                             case.first_approved_cents or 0, reviewer)
                if step in ("first", "repeat"):
                    first = await self._store.first_approval(case.refund_case_id, reviewer, amount)
                    found = first or await self._store.get_case(request.refund_case_id)
                    assert found is not None  # found above, and refund cases are never deleted
                    return found
                if step == "same_reviewer":
                    raise FailedPrecondition(
                        f"refund case {case.refund_case_id} is above the second-approval amount and "
                        f"{case.first_approver} approved it first: another operator must confirm it",
                        reason="SECOND_APPROVER_REQUIRED")
                if step == "other_amount":
                    raise FailedPrecondition(
                        f"{case.first_approver} approved {case.first_approved_cents} cents; a second approval "
                        "confirms that amount (send it, or 0), or deny the case", reason="SECOND_APPROVAL_AMOUNT")
            note = request.note or ("Approved by an operator." if wanted == "approved" else "Denied by an operator.")
            resolved = await self._store.resolve_case(case.refund_case_id, wanted, reviewer, note,
                                                      amount if amount != case.amount_cents else None)
            case = resolved or await self._store.get_case(request.refund_case_id)
            assert case is not None  # found above, and refund cases are never deleted
        if case.state != wanted:
            raise FailedPrecondition(
                f"refund case {case.refund_case_id} is already {case.state.replace('_', ' ')}"
                f"{' by ' + case.reviewer if case.reviewer else ''}; a case is resolved once",
                reason="REFUND_CASE_RESOLVED",
            )
        if case.credit_state == "settling":
            case = await self._settlement.credit_refund(case)
        return case

    async def get_case(self, request: pb.GetRefundCaseRequest) -> RefundCase:
        require_id("refund_case_id", request.refund_case_id)
        case = await self._store.get_case(request.refund_case_id)
        # Another contractor's case is answered as an unknown one: its id tells a contractor nothing.
        if case is None or (request.contractor_id and case.contractor_id != request.contractor_id):
            whose = f" for contractor {request.contractor_id!r}" if request.contractor_id else ""
            raise NotFound(f"no refund case {request.refund_case_id!r}{whose}", reason="NO_REFUND_CASE")
        return case

    async def list_cases(self, request: pb.ListRefundCasesRequest) -> tuple[list[RefundCase], str]:
        size = paging.page_size(request.page_size, 50, 500)
        state = None
        if request.state:
            if request.state not in mappers.REFUND_STATE_NAMES:
                raise InvalidArgument(f"unknown refund state {request.state}", field="state")
            state = mappers.REFUND_STATE_NAMES[request.state]
        position = paging.decode_position(request.page_token)
        before = (position[0], str(position[1])) if position else None
        rows = await self._store.cases(state, request.contractor_id or None, None, before, size + 1)
        return paging.page_of(rows, size, lambda c: paging.encode_position(c.refund_case_id, c.requested_at))

