"""RateCall and RateCalls: validate, decide, store the decisions, settle them, at a fixed cost per batch."""

from __future__ import annotations

import time
from typing import Any

from callersync.billing.v1 import billing_pb2 as pb
from services.billing import freshness, policy
from services.billing.call_settlement import CallSettler
from services.billing.clients import WalletClient, no_wallet
from services.billing.decisions import decision_row, rated_with_other_facts
from services.billing.facts import facts_hash, facts_of
from services.billing.freshness import FactLimits
from services.billing.records import RatedCall
from services.billing.storage import BillingStore
from services.runtime.errors import DomainError
from services.runtime.timestamps import now_stamp, to_datetime

# One outcome per call: the stored (and settled) decision and whether it was decided before this request, or
# the refusal.
Outcome = tuple[RatedCall, bool] | DomainError


class Rater:
    def __init__(self, store: BillingStore, wallet: WalletClient, settler: CallSettler, on_event,
                 limits: FactLimits) -> None:
        self._limits = limits  # how far in the future a call's facts may lie (clock skew)
        self._store = store
        self._wallet = wallet
        self._settler = settler
        self._on_event = on_event  # nudges the outbox relay: CallRated events are waiting

    async def rate_call(self, call: pb.FinishedCall) -> tuple[RatedCall, bool]:
        [outcome] = await self.rate_calls([call])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def rate_calls(self, calls: list[pb.FinishedCall]) -> list[Outcome]:
        """rate_call for a batch, each call with its own outcome, at a fixed cost per batch: one read of the
        stored decisions, one wallet check of the payers, one transaction of decisions, one SettleCalls, one
        transaction marking them settled. Concurrent twins (in this process or another) are kept correct by
        the database: one insert wins, and the wallet's keys make every other settlement a replay."""
        out: list[Any] = [None] * len(calls)
        first_of: dict[str, int] = {}
        unique: list[int] = []
        now_s = time.time()
        for i, call in enumerate(calls):
            try:
                policy.validate_call(call)
                freshness.check_call(call, self._limits, now_s)
            except DomainError as err:
                out[i] = err
                continue
            if first_of.setdefault(call.call_id, i) == i:
                unique.append(i)
        facts = {i: facts_of(calls[i]) for i in unique}
        fp = {i: facts_hash(calls[i], facts[i]) for i in unique}
        stored = await self._store.rated_calls_by_id([calls[i].call_id for i in unique])
        new = [i for i in unique if calls[i].call_id not in stored]
        fresh: dict[str, RatedCall] = {}
        if new:
            fresh = await self._decide(calls, new, facts, out)
            lost = [calls[i].call_id for i in new if out[i] is None and calls[i].call_id not in fresh]
            stored.update(fresh)
            if lost:  # a twin in another request decided first
                stored.update(await self._store.rated_calls_by_id(lost))
        rows: dict[int, RatedCall] = {}
        for i in unique:
            if out[i] is None:
                row = stored[calls[i].call_id]
                if row.facts_hash != fp[i]:
                    out[i] = rated_with_other_facts(calls[i].call_id, row)
                else:
                    rows[i] = row
        settled, failed = await self._settler.settle([r for r in rows.values() if r.state == "settling"])
        for i, row in rows.items():
            call_id = calls[i].call_id
            out[i] = failed.get(call_id) or (settled.get(call_id, row), call_id not in fresh)
        for i, call in enumerate(calls):
            if out[i] is None:  # the same call id twice in the batch: the later ones are re-sends
                first = out[first_of[call.call_id]]
                if isinstance(first, DomainError):
                    out[i] = first
                elif first[0].facts_hash != facts_hash(call):
                    out[i] = rated_with_other_facts(call.call_id, first[0])
                else:
                    out[i] = (first[0], True)
        return out

    async def _decide(self, calls: list[pb.FinishedCall], new: list[int], facts: dict[int, bytes],
                      out: list[Any]) -> dict[str, RatedCall]:
        """Rates the calls never stored and stores their decisions in state 'settling' (with their CallRated
        events) before any money moves. Refusals go into out and store nothing."""
        verdicts = {i: policy.rate_call(calls[i]) for i in new}
        payers = sorted({v.payer_contractor_id for v in verdicts.values() if v.billable})
        # A payer with a hold on the call has a wallet; one without a wallet cannot be settled, so the call is
        # refused before anything is written (the contractor tops up, the call is sent again).
        missing = await self._wallet.without_wallet(payers) if payers else set()
        deciding = []
        for i in new:
            if verdicts[i].billable and verdicts[i].payer_contractor_id in missing:
                out[i] = no_wallet(verdicts[i].payer_contractor_id)
            else:
                deciding.append(i)

        started = [to_datetime(calls[i].started_at) for i in deciding]
        decided_at = now_stamp()  # one decision time for the batch: its decisions commit together

        def decide(k: int, rate) -> dict[str, Any] | None:
            i = deciding[k]
            try:
                return decision_row(calls[i], verdicts[i], facts[i], started[k], rate, decided_at)
            except DomainError as err:
                out[i] = err
                return None

        fresh = await self._store.insert_decisions(
            [(calls[i].zip, started[k]) for k, i in enumerate(deciding)], decide
        )
        if fresh:
            self._on_event()
        return fresh
