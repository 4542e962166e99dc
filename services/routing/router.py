"""RouteCall and NextCandidate, the hot path: one cached ZIP view, one wallet call (Reserve; a GetRoutability
batch only after a refusal) and two Redis round trips per step. The step's records ride in the second round trip
(a Redis stream that the step writer moves into PostgreSQL), so no PostgreSQL commit sits on the path."""

from __future__ import annotations

import base64
import datetime as dt
import time

from callersync.routing.v1 import routing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2 as wpb
from services.routing import cascade, clients, schedule
from services.routing.cascade import Counters, Entry, Session, Skip, SkipReason
from services.routing.claims import PRIMARY, require_e164, require_zip
from services.routing.config import RoutingConfig
from services.routing.directory import Directory
from services.routing.live_state import NO_KEY, CommitOutcome, LiveState, live_key, usage_key
from services.routing.mappers import MODE_PB, POSITION_PB, RING_OUTCOMES, SKIP_PB
from services.routing.schedule import Profile
from services.routing.storage import RoutingStore
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from services.runtime.validation import require_id


def _encode(response: pb.RouteCallResponse) -> str:
    return base64.b64encode(response.SerializeToString()).decode()


def stored_response(session: Session, index: int) -> pb.RouteCallResponse:
    """RouteCallResponse and NextCandidateResponse share their fields, so one stored form serves both."""
    return pb.RouteCallResponse.FromString(base64.b64decode(session.responses[index]))


class Router:
    def __init__(self, directory: Directory, live: LiveState, wallet: clients.WalletClient,
                 config: RoutingConfig, store: RoutingStore) -> None:
        self._directory = directory
        self._store = store
        self._live = live
        self._wallet = wallet
        self._config = config

    # ------------------------------------------------------------ the two RPCs

    async def route_call(self, call_id: str, zip_code: str, caller_number: str) -> pb.RouteCallResponse:
        require_id("call_id", call_id)
        require_zip(zip_code)
        require_e164(caller_number)
        now = dt.datetime.now(dt.UTC)
        view = self._directory.cached(zip_code)
        admission = await self._live.admit(call_id, caller_number, self._counter_keys(view.claims if view else [], now),
                                           now.timestamp(), zip_code)
        if admission.session is not None:
            return stored_response(Session.loads(admission.session), 0)
        dropped = self._directory.observe(admission.gen_claims, admission.gen_blocklist, zip_code, admission.gen_zip)
        session = Session(call_id, zip_code, caller_number, 0, [])
        if await self._directory.is_blocked(caller_number):
            return await self._finish_early(session, pb.ROUTE_OUTCOME_CALLER_BLOCKED,
                                            f"caller {caller_number} is on the blocklist; nobody is rung")
        if admission.burst_count > self._config.burst_max_calls:
            return await self._finish_early(
                session, pb.ROUTE_OUTCOME_CALLER_RATE_LIMITED,
                f"caller {caller_number} placed {admission.burst_count} calls within {self._config.burst_window_s}s"
                f" (at most {self._config.burst_max_calls}); nobody is rung")
        counters = admission.counters
        if view is None or dropped:
            view = await self._directory.view(zip_code)
            keys = self._counter_keys(view.claims, now)
            counters = (await self._live.admit(None, None, keys, now.timestamp())).counters
        if not view.claims or view.rate_cents is None:
            return await self._finish_early(session, pb.ROUTE_OUTCOME_NO_CLAIMS, f"nobody claims ZIP {zip_code}")
        session.rate_cents = view.rate_cents
        session.order = [Entry(s.contractor_id, s.position, s.backup_rank, p.mode) for s, p in view.claims]
        profiles = {s.contractor_id: p for s, p in view.claims}
        known = await self._counters(view.claims, counters, now)
        return await self._offer_next(session, profiles, known, now, expected_step=0, previous=None, records=[])

    async def next_candidate(self, call_id: str, after_step: int, ring_outcome: int) -> pb.RouteCallResponse:
        require_id("call_id", call_id)
        if after_step < 1:
            raise InvalidArgument("after_step must be the step of the candidate passed over (1 for RouteCall's)",
                                  field="after_step")
        if ring_outcome not in RING_OUTCOMES:
            raise InvalidArgument(f"ring_outcome {ring_outcome} is not a RingOutcome", field="ring_outcome")
        now = dt.datetime.now(dt.UTC)
        admission = await self._live.admit(call_id, None, [], now.timestamp())
        if admission.session is None:
            raise NotFound(f"no cascade for call {call_id!r}: unknown, or older than {self._config.session_ttl_s}s;"
                           " start it with RouteCall", reason="UNKNOWN_CALL", call_id=call_id)
        session = Session.loads(admission.session)
        self._directory.observe(admission.gen_claims, admission.gen_blocklist, session.zip, admission.gen_zip)
        if after_step < session.step:
            return stored_response(session, after_step)  # a repeat: the answer it got before
        if after_step > session.step:
            raise FailedPrecondition(f"call {call_id!r} is at step {session.step}; send after_step={session.step}",
                                     reason="STEP_AHEAD")
        if session.finished:
            return stored_response(session, -1)
        previous = next(e for e in session.order if e.contractor_id == session.offered[-1])
        await self._wallet.release(session.reservation_id)
        outcome = RING_OUTCOMES[ring_outcome]
        records = [self._record(session, previous, "not_taken", now, ring_outcome=outcome,
                                message=f"rung, not taken: {outcome.replace('_', ' ')}")]
        view = await self._directory.view(session.zip)
        # A contractor who gave the claim up since the call came in is not rung any more.
        claims = [(s, p) for s, p in view.claims
                  if s.contractor_id in {e.contractor_id for e in session.remaining()}]
        profiles = {s.contractor_id: p for s, p in claims}
        counters = (await self._live.admit(None, None, self._counter_keys(claims, now), now.timestamp())).counters
        expected = session.step
        session.step += 1
        session.reservation_id = ""
        known = await self._counters(claims, counters, now)
        return await self._offer_next(session, profiles, known, now, expected_step=expected,
                                      previous=previous.contractor_id, records=records)

    # ------------------------------------------------------------ one step of the cascade

    async def _offer_next(self, session: Session, profiles: dict[str, Profile], counters: dict[str, Counters],
                          now: dt.datetime, *, expected_step: int, previous: str | None,
                          records: list[dict]) -> pb.RouteCallResponse:
        remaining = [e for e in session.remaining() if e.contractor_id in profiles]
        verdicts = {e.contractor_id: cascade.local_skip(profiles[e.contractor_id], now,
                                                        counters.get(e.contractor_id, Counters()))
                    for e in remaining}
        # One wallet hop in the usual case: Reserve on the first candidate routing itself has no reason to pass
        # over (the wallet refuses atomically if they are paused or short). Only after a refusal does the wallet
        # say in one batch who else can pay, with the figures for the skip messages.
        routable: dict[str, wpb.Routability] | None = None
        skipped: list[Skip] = []
        for i, entry in enumerate(remaining):
            cid = entry.contractor_id
            verdict = verdicts[cid]
            if verdict is None and routable is not None:
                verdict = self._wallet_verdict(routable[cid], session.rate_cents)
            if verdict is None:
                reserved = await self._wallet.reserve(cid, session.call_id, session.rate_cents,
                                                      self._config.reservation_ttl_s)
                if reserved is None:
                    continue  # this call already held (and gave up) a reservation on them
                if isinstance(reserved, clients.Refused):
                    if routable is None:
                        later = [e.contractor_id for e in remaining[i:] if verdicts[e.contractor_id] is None]
                        routable = await self._wallet.routability(later, session.rate_cents)
                    verdict = self._wallet_verdict(routable[cid], session.rate_cents) or (
                        cascade.wallet_skip(reserved.refusal, 0, 0, 0, session.rate_cents)[0], reserved.message)
                else:
                    response = self._offered(session, entry, reserved, skipped)
                    committed = await self._commit(session, response, now, expected_step, previous, records,
                                                   offered=entry, profile=profiles[cid], reservation=reserved,
                                                   skipped=skipped)
                    if isinstance(committed, pb.RouteCallResponse):
                        return committed
                    verdict = committed  # lost the live slot to a concurrent call: they are busy now
            skipped.append(Skip(entry, *verdict))
        response = pb.RouteCallResponse(
            outcome=pb.ROUTE_OUTCOME_NO_CANDIDATE, skipped=[self._skipped(s) for s in skipped],
            message=f"no contractor left to ring: {len(skipped)} skipped now, {len(session.offered)} rung before")
        session.finished = True
        committed = await self._commit(session, response, now, expected_step, previous, records, offered=None,
                                       profile=None, reservation=None, skipped=skipped)
        assert isinstance(committed, pb.RouteCallResponse)
        return committed

    async def _commit(self, session: Session, response: pb.RouteCallResponse, now: dt.datetime, expected_step: int,
                      previous: str | None, records: list[dict], *, offered: Entry | None, profile: Profile | None,
                      reservation: wpb.Reservation | None, skipped: list[Skip]) -> pb.RouteCallResponse | tuple:
        """Stores the step; returns the response to give, or a busy verdict when the live slot was taken."""
        step_records = records + [self._record(session, s.entry, "skipped", now, skip_reason=s.reason,
                                               message=s.message) for s in skipped]
        if offered is not None:
            assert reservation is not None  # an offer always comes with the reservation made for it
            step_records.append(self._record(session, offered, "offered", now))
            session.offered.append(offered.contractor_id)
            session.reservation_id = reservation.reservation_id
        session.responses.append(_encode(response))
        result = await self._live.commit(
            session.call_id, session.dumps(), expected_step=expected_step, now=now.timestamp(),
            offered_to=offered.contractor_id if offered else None,
            limit=profile.concurrency_limit() if profile else None, previous=previous, steps=step_records)
        if result.outcome == CommitOutcome.OK:
            return response
        session.responses.pop()
        if offered is not None:
            session.offered.pop()
            session.reservation_id = ""
        if result.outcome == CommitOutcome.BUSY:
            # Only an offer with a profile sends a limit (offered_to and limit above), and only a limit makes the
            # script answer busy, with the live count.
            assert reservation is not None and profile is not None and result.detail is not None
            await self._wallet.release(reservation.reservation_id)
            return cascade.concurrency_skip(profile, int(result.detail))
        # Another replica answered this step first: give its answer, and drop our hold unless it is the same.
        if reservation is not None:
            winner = Session.loads(result.detail) if result.detail else None
            if winner is None or reservation.reservation_id not in (winner.reservation_id,):
                await self._wallet.release(reservation.reservation_id)
        if result.outcome == CommitOutcome.GONE:
            raise NotFound(f"the cascade of call {session.call_id!r} expired while routing it", reason="UNKNOWN_CALL")
        assert result.detail is not None  # exists and moved, the outcomes left, carry the stored session
        winner = Session.loads(result.detail)
        return stored_response(winner, 0 if expected_step == 0 else min(expected_step, len(winner.responses) - 1))

    # ------------------------------------------------------------ the wallet

    def _wallet_verdict(self, answer: wpb.Routability, rate_cents: int) -> tuple[SkipReason, str] | None:
        refusal = clients.refusal_of(answer)
        if refusal is None:
            return None
        return cascade.wallet_skip(refusal, answer.available_cents, answer.balance_cents,
                                   answer.pause_threshold_cents, rate_cents)

    # ------------------------------------------------------------ building answers and records

    async def _finish_early(self, session: Session, outcome: int, message: str) -> pb.RouteCallResponse:
        session.finished = True
        response = pb.RouteCallResponse(outcome=outcome, message=message)
        now = dt.datetime.now(dt.UTC)
        committed = await self._commit(session, response, now, 0, None, [], offered=None, profile=None,
                                       reservation=None, skipped=[])
        assert isinstance(committed, pb.RouteCallResponse)
        return committed

    def _offered(self, session: Session, entry: Entry, reservation: wpb.Reservation,
                 skipped: list[Skip]) -> pb.RouteCallResponse:
        where = "primary" if entry.position == PRIMARY else f"backup {entry.backup_rank}"
        return pb.RouteCallResponse(
            outcome=pb.ROUTE_OUTCOME_OFFERED,
            candidate=pb.Candidate(
                contractor_id=entry.contractor_id, reservation_id=reservation.reservation_id,
                reserved_cents=reservation.amount_cents, reservation_expires_at=reservation.expires_at,
                ring_timeout_s=self._config.ring_timeout_s, position=POSITION_PB[entry.position],
                backup_rank=entry.backup_rank, mode=MODE_PB[entry.mode], step=session.step),
            skipped=[self._skipped(s) for s in skipped],
            message=f"ring {entry.contractor_id} ({where}) for up to {self._config.ring_timeout_s}s"
                    + (f"; {len(skipped)} skipped" if skipped else ""))

    @staticmethod
    def _skipped(skip: Skip) -> pb.SkippedCandidate:
        return pb.SkippedCandidate(contractor_id=skip.entry.contractor_id, position=POSITION_PB[skip.entry.position],
                                   backup_rank=skip.entry.backup_rank, reason=SKIP_PB[skip.reason],
                                   message=skip.message)

    @staticmethod
    def _record(session: Session, entry: Entry, kind: str, now: dt.datetime, *, skip_reason: str = "",
                ring_outcome: str = "", message: str = "") -> dict:
        return {"call_id": session.call_id, "step": session.step, "contractor_id": entry.contractor_id,
                "kind": kind, "zip": session.zip, "position": entry.position, "backup_rank": entry.backup_rank,
                "skip_reason": skip_reason, "ring_outcome": ring_outcome, "message": message,
                "rate_cents": session.rate_cents, "at": time.time() if kind == "not_taken" else now.timestamp()}

    @staticmethod
    def _counter_keys(claims: list, now: dt.datetime) -> list[tuple[str, str, str]]:
        """Connected-call counts only for contractors with a cap: nothing reads the others'."""
        return [(live_key(s.contractor_id), usage_key(s.contractor_id, schedule.day_key(p, now)),
                 usage_key(s.contractor_id, schedule.month_key(p, now))) if p.counts_connected_calls
                else (live_key(s.contractor_id), NO_KEY, NO_KEY) for s, p in claims]

    async def _counters(self, claims: list, counters: list[tuple[int, int, int]],
                        now: dt.datetime) -> dict[str, Counters]:
        """What Redis said of each claim's contractor. A connected-call count it no longer has (flushed, evicted)
        is read from routing's own record of connected calls and put back: a cap holds whatever Redis lost.
        Only contractors with a cap need counts, so the others cost nothing here."""
        out: dict[str, Counters] = {}
        missing: list[tuple[str, Profile]] = []
        for (slot, profile), (live, today, month) in zip(claims, counters, strict=True):
            out[slot.contractor_id] = Counters(live, max(today, 0), max(month, 0))
            if (today < 0 or month < 0) and profile.counts_connected_calls:
                missing.append((slot.contractor_id, profile))
        if missing:
            counts = await self._store.connected_calls_for(
                [(cid, *schedule.period_starts(profile, now)) for cid, profile in missing])
            refill = {}
            for cid, profile in missing:
                today, month = counts[cid]
                out[cid] = Counters(out[cid].live_calls, today, month)
                refill[usage_key(cid, schedule.day_key(profile, now))] = today
                refill[usage_key(cid, schedule.month_key(profile, now))] = month
            await self._live.set_usage(refill, only_missing=True)
        return out
