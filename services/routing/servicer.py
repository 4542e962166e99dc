"""RoutingService's gRPC layer: validate, call the use case (claim desk, profile desk, blocklist, router) or
storage, map to proto. RouteCall and NextCandidate live in router.py (the hot path)."""

from __future__ import annotations

import datetime as dt

import grpc

from callersync.routing.v1 import routing_pb2 as pb
from callersync.routing.v1 import routing_pb2_grpc
from services.routing import claims as rules
from services.routing import mappers, schedule
from services.routing.blocklist import Blocklist
from services.routing.claim_desk import ClaimDesk
from services.routing.profile_desk import ProfileDesk, ProfileUsage
from services.routing.router import Router
from services.routing.schedule import Window
from services.routing.storage import RoutingStore
from services.runtime.errors import InvalidArgument
from services.runtime.paging import (
    decode_position,
    decode_token,
    encode_position,
    encode_token,
    page_of,
    page_size,
)
from services.runtime.timestamps import to_datetime
from services.runtime.validation import require_id, require_text

MAX_PAGE = 500
DEFAULT_PAGE = 50
MAX_NOTE = 1000


def _profile(view: ProfileUsage) -> pb.RoutingProfile:
    return mappers.routing_profile(view.stored, view.connected_today, view.connected_this_month)


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    def __init__(self, store: RoutingStore, router: Router, claims: ClaimDesk, profiles: ProfileDesk,
                 blocklist: Blocklist) -> None:
        self._store = store
        self._router = router
        self._claims = claims
        self._profiles = profiles
        self._blocklist = blocklist

    # ------------------------------------------------------------ claims

    async def ClaimZip(self, request: pb.ClaimZipRequest, context: grpc.aio.ServicerContext) -> pb.ClaimZipResponse:
        require_id("contractor_id", request.contractor_id)
        rules.require_zip(request.zip)
        position = mappers.POSITIONS.get(request.position)
        if position is None:
            raise InvalidArgument("position must be CLAIM_POSITION_PRIMARY or CLAIM_POSITION_BACKUP", field="position")
        change, threshold = await self._claims.claim(request.contractor_id, request.zip, position, request.backup_rank)
        return pb.ClaimZipResponse(claim=mappers.claim(change.claim),
                                   zip_claims=[mappers.claim(r) for r in change.zip_claims],
                                   pause_threshold_cents=threshold)

    async def ReleaseZip(self, request: pb.ReleaseZipRequest,
                         context: grpc.aio.ServicerContext) -> pb.ReleaseZipResponse:
        require_id("contractor_id", request.contractor_id)
        rules.require_zip(request.zip)
        change, threshold = await self._claims.release(request.contractor_id, request.zip)
        return pb.ReleaseZipResponse(released_claim=mappers.claim(change.claim), pause_threshold_cents=threshold)

    async def ListClaims(self, request: pb.ListClaimsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListClaimsResponse:
        if bool(request.contractor_id) == bool(request.zip):
            raise InvalidArgument("set exactly one of contractor_id and zip", field="contractor_id")
        size = page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
        if request.zip:
            rules.require_zip(request.zip)
            # A ZIP has at most one primary and a few backups: one page always holds them all.
            return pb.ListClaimsResponse(claims=[mappers.claim(r)
                                                 for r in await self._store.claims_of_zip(request.zip)])
        require_id("contractor_id", request.contractor_id)
        token = decode_token(request.page_token, 1)
        after = str(token[0]) if token else ""
        rows, next_token = page_of(await self._store.claims_of_contractor(request.contractor_id, after, size + 1),
                                   size, lambda c: encode_token(c.zip))
        return pb.ListClaimsResponse(claims=[mappers.claim(r) for r in rows], next_page_token=next_token)

    # ------------------------------------------------------------ mode, schedule, caps

    async def SetMode(self, request: pb.SetModeRequest, context: grpc.aio.ServicerContext) -> pb.SetModeResponse:
        require_id("contractor_id", request.contractor_id)
        mode = mappers.MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument("mode must be CONTRACTOR_MODE_HUMAN or CONTRACTOR_MODE_AI_AGENT", field="mode")
        return pb.SetModeResponse(profile=_profile(await self._profiles.set_mode(request.contractor_id, mode)))

    async def SetSchedule(self, request: pb.SetScheduleRequest,
                          context: grpc.aio.ServicerContext) -> pb.SetScheduleResponse:
        require_id("contractor_id", request.contractor_id)
        schedule.require_time_zone(request.time_zone)
        windows = schedule.validate_windows(
            [Window(int(w.day), w.start_minute, w.end_minute) for w in request.weekly_hours])
        view = await self._profiles.set_schedule(request.contractor_id, request.time_zone, windows)
        return pb.SetScheduleResponse(profile=_profile(view))

    async def SetCaps(self, request: pb.SetCapsRequest, context: grpc.aio.ServicerContext) -> pb.SetCapsResponse:
        require_id("contractor_id", request.contractor_id)
        if not request.HasField("caps"):
            raise InvalidArgument("caps is required: every ceiling at once, 0 removes one", field="caps")
        caps = request.caps
        for name in ("daily_max_connected_calls", "monthly_max_connected_calls", "max_concurrent_calls"):
            if getattr(caps, name) < 0:
                raise InvalidArgument(f"caps.{name} must be 0 (no ceiling) or positive", field=f"caps.{name}")
        view = await self._profiles.set_caps(request.contractor_id, caps.daily_max_connected_calls,
                                             caps.monthly_max_connected_calls, caps.max_concurrent_calls)
        return pb.SetCapsResponse(profile=_profile(view))

    async def GetRoutingProfile(self, request: pb.GetRoutingProfileRequest,
                                context: grpc.aio.ServicerContext) -> pb.GetRoutingProfileResponse:
        require_id("contractor_id", request.contractor_id)
        return pb.GetRoutingProfileResponse(profile=_profile(await self._profiles.profile(request.contractor_id)))

    # ------------------------------------------------------------ routing a call

    async def RouteCall(self, request: pb.RouteCallRequest, context: grpc.aio.ServicerContext) -> pb.RouteCallResponse:
        return await self._router.route_call(request.call_id, request.zip, request.caller_number)

    async def NextCandidate(self, request: pb.NextCandidateRequest,
                            context: grpc.aio.ServicerContext) -> pb.NextCandidateResponse:
        answer = await self._router.next_candidate(request.call_id, request.after_step, request.ring_outcome)
        return pb.NextCandidateResponse.FromString(answer.SerializeToString())

    # ------------------------------------------------------------ blocklist

    async def BlockCaller(self, request: pb.BlockCallerRequest,
                          context: grpc.aio.ServicerContext) -> pb.BlockCallerResponse:
        rules.require_e164(request.caller_number)
        require_id("blocked_by", request.blocked_by)
        require_text("note", request.note, MAX_NOTE)
        row = await self._blocklist.block(request.caller_number, request.blocked_by, request.note)
        return pb.BlockCallerResponse(blocked_caller=mappers.blocked_caller(row))

    async def UnblockCaller(self, request: pb.UnblockCallerRequest,
                            context: grpc.aio.ServicerContext) -> pb.UnblockCallerResponse:
        rules.require_e164(request.caller_number)
        require_id("unblocked_by", request.unblocked_by)
        require_text("note", request.note, MAX_NOTE)
        row = await self._blocklist.unblock(request.caller_number, request.unblocked_by, request.note)
        return pb.UnblockCallerResponse(blocked_caller=mappers.blocked_caller(row))

    async def ListBlockedCallers(self, request: pb.ListBlockedCallersRequest,
                                 context: grpc.aio.ServicerContext) -> pb.ListBlockedCallersResponse:
        size = page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
        position = decode_position(request.page_token)
        rows, token = page_of(
            await self._store.blocked_page((position[0], str(position[1])) if position else None, size + 1), size,
            lambda b: encode_position(b.caller_number, b.blocked_at))
        return pb.ListBlockedCallersResponse(blocked_callers=[mappers.blocked_caller(r) for r in rows],
                                             next_page_token=token)

    # ------------------------------------------------------------ missed calls

    async def ListMissedCalls(self, request: pb.ListMissedCallsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListMissedCallsResponse:
        require_id("contractor_id", request.contractor_id)
        size = page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
        end = (to_datetime(request.period_end) if request.HasField("period_end")
               else dt.datetime.now(dt.UTC))
        start = (to_datetime(request.period_start) if request.HasField("period_start")
                 else end - dt.timedelta(days=30))
        if start >= end:
            raise InvalidArgument("period_start must be before period_end", field="period_start")
        position = decode_position(request.page_token, int)
        before = (position[0], int(position[1])) if position else None
        rows, next_token = page_of(await self._store.missed_calls(request.contractor_id, start, end, before, size + 1),
                                   size, lambda m: encode_position(m.step_id, m.at))
        return pb.ListMissedCallsResponse(missed_calls=[mappers.missed_call(r) for r in rows],
                                          next_page_token=next_token)
