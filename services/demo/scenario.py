"""The demo's day as plain data: who the contractors are, which ZIPs they claim, and what happens on each call.
Everything here is decided by one seeded random generator, so `--seed` replays the same day; identifiers that
must differ between runs (contractor ids, ZIPs, phone numbers) come from the driver, not from here."""

from __future__ import annotations

import dataclasses
import random

NAMES = (
    "Acme Plumbing",
    "Bright Spark Electric",
    "Cool Breeze HVAC",
    "Rapid Rooter Drains",
    "Summit Roofing",
    "Green Leaf Landscaping",
    "Ironclad Garage Doors",
    "Clearview Windows",
    "Hometown Handyman",
    "Blue Sky Solar",
)
LOW, AI = 0, 1  # the contractor whose wallet runs low, and the one an AI agent answers for
DAY_OFF = 4  # with five or more contractors, this one takes today off (a schedule without today)
MIN_CONTRACTORS = 3
MIN_CALLS = 16
WELL_FUNDED_CENTS = 100_000
AI_FUNDS_CENTS = 50_000
BOOKING_FEE_CENTS = 2500
RATES_CENTS = tuple(range(3000, 8001, 500))

# What a person (or their phone) does when rung. AI candidates always answer, whatever the plan says.
CONNECTED = "connected"  # talks 30 s or more: billable
DROPPED = "dropped"  # the line drops after 30 s: still billable
SHORT = "short"  # the homeowner hangs up under 30 s: free
VOICEMAIL = "voicemail"  # voicemail picks up and takes a message: free, the call ends there
NO_ANSWER = "no_answer"  # rings out: the engine cascades to the next candidate
DECLINED = "declined"
ANSWERING = (CONNECTED, DROPPED, SHORT, VOICEMAIL)


@dataclasses.dataclass(frozen=True)
class Contractor:
    index: int
    name: str
    mode: str  # "human" or "ai_agent"
    top_up_cents: int
    day_off: bool = False


@dataclasses.dataclass(frozen=True)
class ZipPlan:
    index: int
    rate_cents: int
    primary: int
    backups: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Ring:
    """One rung candidate's behaviour, with its figures fixed in advance so a seed replays them."""

    kind: str
    ring_s: float
    talk_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class CallPlan:
    zip_index: int
    rings: tuple[Ring, ...]  # for successive human candidates; past the end they ring out
    ai_talk_s: float = 120.0
    books: bool = False  # when an AI agent answers: it books an appointment
    recorded: bool = True
    spam: bool = False  # from the robocaller a refund will later be asked for
    note: str = ""


@dataclasses.dataclass(frozen=True)
class TopUp:
    contractor: int
    cents: int
    note: str


@dataclasses.dataclass(frozen=True)
class Day:
    contractors: tuple[Contractor, ...]
    zips: tuple[ZipPlan, ...]
    events: tuple[CallPlan | TopUp, ...]  # in order; the blocked robocaller's last call comes after refunds
    booking_fee_cents: int


def contractors(n: int, rates: list[int]) -> tuple[Contractor, ...]:
    cast = []
    for i in range(n):
        name = NAMES[i % len(NAMES)] + (f" {i // len(NAMES) + 1}" if i >= len(NAMES) else "")
        if i == LOW:
            # Two billable calls on their own ZIP leave half a call's price: below the pause threshold.
            top_up = max(2500, rates[LOW] * 5 // 2)
        elif i == AI:
            top_up = AI_FUNDS_CENTS
        else:
            top_up = WELL_FUNDED_CENTS
        cast.append(Contractor(i, name, "ai_agent" if i == AI else "human", top_up, day_off=i == DAY_OFF))
    return tuple(cast)


def claims(n: int, rates: list[int]) -> tuple[ZipPlan, ...]:
    """One ZIP per contractor, which they hold as primary; up to two human backups (never the low wallet, so
    its pause threshold stays its own ZIP's rate), the AI agent as a last resort where fewer humans remain."""
    plans = []
    for z in range(n):
        humans = [(z + k) % n for k in range(1, n) if (z + k) % n not in (LOW, AI, z)]
        backups = humans[:2]
        if len(backups) < 2 and z != AI:
            backups.append(AI)
        plans.append(ZipPlan(z, rates[z], z, tuple(backups)))
    return tuple(plans)


def _ring(rng: random.Random, kind: str) -> Ring:
    if kind == CONNECTED:
        return Ring(kind, rng.uniform(3, 15), rng.uniform(35, 540))
    if kind == DROPPED:
        return Ring(kind, rng.uniform(3, 15), rng.uniform(30.5, 90))
    if kind == SHORT:
        return Ring(kind, rng.uniform(3, 15), rng.uniform(4, 29.5))
    if kind == VOICEMAIL:
        return Ring(kind, 20.0, rng.uniform(12, 60))
    return Ring(kind, 20.0 if kind == NO_ANSWER else rng.uniform(2, 8))


def _call(rng: random.Random, zip_index: int, *kinds: str, **extra) -> CallPlan:
    return CallPlan(zip_index, tuple(_ring(rng, k) for k in kinds), ai_talk_s=rng.uniform(60, 300), **extra)


def _filler(rng: random.Random, n_zips: int) -> CallPlan:
    zip_index = rng.randrange(n_zips)
    shape = rng.choices(
        ["connected", "dropped", "short", "voicemail", "cascade", "declined", "nobody"],
        weights=[40, 6, 16, 12, 14, 6, 6],
    )[0]
    kinds = {
        "connected": [CONNECTED],
        "dropped": [DROPPED],
        "short": [SHORT],
        "voicemail": [VOICEMAIL],
        "cascade": [NO_ANSWER, rng.choice([CONNECTED, CONNECTED, SHORT])],
        "declined": [DECLINED, CONNECTED],
        "nobody": [NO_ANSWER, NO_ANSWER, NO_ANSWER, NO_ANSWER],
    }[shape]
    return _call(rng, zip_index, *kinds, books=rng.random() < 0.6, recorded=rng.random() > 0.05)


def plan_day(seed: int | None, n_contractors: int, n_calls: int) -> Day:
    if n_contractors < MIN_CONTRACTORS:
        raise ValueError(
            f"--contractors must be at least {MIN_CONTRACTORS} (a low wallet, an AI agent, a backup)"
        )
    if n_calls < MIN_CALLS:
        raise ValueError(
            f"--calls must be at least {MIN_CALLS}: the scripted moments of the day take that many"
        )
    rng = random.Random(seed)
    rates = [rng.choice(RATES_CENTS) for _ in range(n_contractors)]
    cast = contractors(n_contractors, rates)
    zips = claims(n_contractors, rates)
    human = next(i for i in range(n_contractors) if i not in (LOW, AI))

    def c(z, *kinds, **extra):
        return _call(rng, z, *kinds, **extra)

    # The scripted moments, in the order a dispatcher would tell the story.
    morning = [
        c(LOW, CONNECTED, note="a real conversation: billable"),
        c(human, NO_ANSWER, CONNECTED, note="primary rings out, the backup connects"),
        c(AI, books=True, note="the AI agent books an appointment"),
        c(human, CONNECTED, spam=True, note="a robocaller keeps the line 35 s+"),
        c(LOW, DROPPED, note="the line drops after 30 s: still billable; the wallet runs low"),
        c(human, VOICEMAIL, note="voicemail takes a message: free"),
        c(LOW, CONNECTED, note="the low wallet is paused: skipped, a backup takes it"),
        c(rng.randrange(n_contractors), SHORT, note="the homeowner hangs up under 30 s: free"),
        c(human, CONNECTED, recorded=False, note="nothing was recorded, so a refund cannot be defended"),
        c(AI, note="the AI agent answers; no booking"),
    ]
    after_top_up = [c(LOW, CONNECTED, note="topped up: the low wallet is back in rotation"), c(LOW, SHORT)]
    # The robocaller's last call comes after the refunds (it is blocked by then), so it is not planned here.
    fillers = n_calls - len(morning) - len(after_top_up) - 1
    before = fillers * 3 // 5
    top_up = TopUp(LOW, max(2500, rates[LOW] * 3), "the owner notices the pause and tops up")
    events: list[CallPlan | TopUp] = morning
    events += [_filler(rng, n_contractors) for _ in range(before)]
    events += [top_up, *after_top_up]
    events += [_filler(rng, n_contractors) for _ in range(fillers - before)]
    return Day(cast, zips, tuple(events), BOOKING_FEE_CENTS)
