"""Routing's state in Redis: cascade sessions (TTL, so any replica answers the next step), calls ringing or
connected per contractor, connected-call counts for caps, the burst counter per caller, cache generations,
and the routing-step stream. Each routing step costs two round trips, each one Lua script, sent over the
pipelined connection of services/runtime/redis_pipe.py."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import cast

import redis.asyncio as redis

from services.runtime.redis_pipe import Arg, RedisPipe, Script, pack

GEN_CLAIMS = "routing:gen:claims"  # every ZIP's view at once (a whole rate card re-read)
GEN_ZIPS = "routing:gen:zips"  # a hash: one ZIP's view (its claims, their contractors' profiles, its rate)
GEN_BLOCKLIST = "routing:gen:blocklist"
STEPS_STREAM = "routing.steps"
NO_KEY = "routing:none"  # a key never set: a slot in a script's KEYS with nothing to read
USAGE_TTL_S = 40 * 86400  # a month's count outlives the month

# Before a step: the session if the call is known, the cache generations (the one of the ZIP asked for, or of
# the known call's ZIP), the caller's burst count, and per candidate [calls ringing or connected, connected today,
# connected this month]; -1 for a count Redis does not have (never set, flushed, evicted), which routing then
# reads from PostgreSQL.
_ADMIT = Script("routing_admit", """
local s = redis.call('GET', KEYS[1])
local z = ARGV[3]
if s and z == '' then z = cjson.decode(s)['zip'] end
local out = {s or false, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0', 0,
             z ~= '' and redis.call('HGET', KEYS[5], z) or '0'}
if s then return out end
if KEYS[4] ~= 'routing:none' then
  local n = redis.call('INCR', KEYS[4])
  if n == 1 then redis.call('EXPIRE', KEYS[4], ARGV[1]) end
  out[4] = n
end
for i = 6, #KEYS, 3 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i], '(' .. ARGV[2], '+inf')
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i + 1]) or '-1')
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i + 2]) or '-1')
end
return out
""")

# After the wallet answered: take the offered contractor's live slot if their limit allows, store the session
# (only over the step it was read at, so two replicas never both advance one call), free the previous
# contractor's slot and append the step's records to the stream.
_COMMIT = Script("routing_commit", """
local cur = redis.call('GET', KEYS[1])
local expected = tonumber(ARGV[7])
if expected == 0 then
  if cur then return {'exists', cur} end
else
  if not cur then return {'gone', false} end
  local st = cjson.decode(cur)
  if st['step'] ~= expected or st['finished'] then return {'moved', cur} end
end
local limit = tonumber(ARGV[6])
if limit ~= -2 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
  local live = redis.call('ZCARD', KEYS[2])
  if limit >= 0 and live >= limit then return {'busy', tostring(live)} end
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
end
if KEYS[3] ~= 'routing:none' then redis.call('ZREM', KEYS[3], ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[8] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'steps', ARGV[8])
end
return {'ok', false}
""")


def session_key(call_id: str) -> str:
    return f"routing:call:{call_id}"


def live_key(contractor_id: str) -> str:
    return f"routing:live:{contractor_id}"


def usage_key(contractor_id: str, period: str) -> str:
    """period is a local day (YYYY-MM-DD) or month (YYYY-MM) in the contractor's time zone."""
    return f"routing:usage:{contractor_id}:{period}"


@dataclasses.dataclass(frozen=True)
class Change:
    """What a write changed, for every replica's cache: some ZIPs' views, all of them, the blocklist."""

    zips: tuple[str, ...] = ()
    every_zip: bool = False
    blocklist: bool = False


@dataclasses.dataclass(frozen=True)
class Admission:
    session: bytes | None
    gen_claims: bytes
    gen_blocklist: bytes
    burst_count: int
    gen_zip: bytes  # of the ZIP asked for, or of the known call's ZIP
    # Per asked candidate: (live calls, connected today, connected this month).
    counters: list[tuple[int, int, int]]


class CommitOutcome(enum.StrEnum):
    """What the commit script did with a step; the values are the words it returns."""

    OK = "ok"
    EXISTS = "exists"  # another replica stored this call's first step first
    MOVED = "moved"  # another replica answered this step first, or the cascade finished
    GONE = "gone"  # the session expired
    BUSY = "busy"  # the offered contractor's concurrency limit is reached


@dataclasses.dataclass(frozen=True)
class Committed:
    outcome: CommitOutcome
    detail: bytes | None  # the stored session (EXISTS, MOVED), or the live count (BUSY)


class LiveState:
    def __init__(self, client: redis.Redis, pipe: RedisPipe, *, burst_window_s: int, session_ttl_s: int,
                 slot_ttl_s: int, steps_maxlen: int = 1_000_000) -> None:
        self.redis = client
        self._pipe = pipe  # the scripts of every step, and the connected-call counts
        self._burst_window_s = burst_window_s
        self._session_ttl_s = session_ttl_s
        self._slot_ttl_s = slot_ttl_s
        self._steps_maxlen = steps_maxlen

    async def admit(self, call_id: str | None, caller_number: str | None, counter_keys: list[tuple[str, str, str]],
                    now: float, zip_code: str = "") -> Admission:
        """caller_number None: count no burst (a later step of a known call); call_id None: counters only;
        zip_code empty: the generation of the known call's ZIP."""
        burst = f"routing:burst:{caller_number}" if caller_number else NO_KEY
        keys = ([session_key(call_id) if call_id else NO_KEY, GEN_CLAIMS, GEN_BLOCKLIST, burst, GEN_ZIPS]
                + [k for triple in counter_keys for k in triple])
        out = await self._pipe.run(_ADMIT, keys, [self._burst_window_s, repr(now), zip_code])
        flat = [int(x) for x in out[5:]]
        return Admission(out[0], out[1], out[2], int(out[3]), out[4],
                         [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)])  # type: ignore[misc]

    async def session(self, call_id: str) -> bytes | None:
        # redis-py types replies as str too, for clients that decode them; ours does not.
        return cast(bytes | None, await self.redis.get(session_key(call_id)))

    async def commit(self, call_id: str, session_json: str, *, expected_step: int, now: float,
                     offered_to: str | None, limit: int | None, previous: str | None, steps: list[dict]) -> Committed:
        """limit None: no ceiling on the offered contractor's live calls."""
        keys = [session_key(call_id), live_key(offered_to) if offered_to else NO_KEY,
                live_key(previous) if previous else NO_KEY, STEPS_STREAM]
        args: list[Arg] = [session_json, self._session_ttl_s, call_id, repr(now), repr(now + self._slot_ttl_s),
                           -2 if offered_to is None else (-1 if limit is None else limit), expected_step,
                           json.dumps(steps, separators=(",", ":")) if steps else "", self._slot_ttl_s,
                           self._steps_maxlen]
        out = await self._pipe.run(_COMMIT, keys, args)
        return Committed(CommitOutcome(out[0].decode()), out[1])

    async def end_calls(self, call_id: str, contractor_ids: list[str]) -> None:
        """A rated call rings and connects nobody any more: free its slots."""
        if contractor_ids:
            pipe = self.redis.pipeline(transaction=False)
            for cid in contractor_ids:
                pipe.zrem(live_key(cid), call_id)
            await pipe.execute()

    async def set_usage(self, counts: dict[str, int], *, only_missing: bool = False) -> None:
        """Connected-call counts, absolute (so a repeated event counts once). only_missing: a count read from
        PostgreSQL to refill the cache, which must not overwrite a newer one a rated call wrote meanwhile."""
        if counts:
            nx = (b"NX",) if only_missing else ()
            await self._pipe.pipeline([pack((b"SET", key, n, b"EX", USAGE_TTL_S, *nx)) for key, n in counts.items()])

    async def bump(self, change: Change) -> None:
        """Tells every replica's cache what changed: they drop their copy at their next look."""
        commands = [pack((b"HINCRBY", GEN_ZIPS, z, 1)) for z in change.zips]
        commands += [pack((b"INCR", gen)) for gen, changed in ((GEN_CLAIMS, change.every_zip),
                                                                (GEN_BLOCKLIST, change.blocklist)) if changed]
        if commands:
            await self._pipe.pipeline(commands)
