"""`callersync demo` against the three services running as processes: it tells the whole day, its summary shows
every contractor, a pause and its resumption, billable and free calls, a refund, and the ledger reconciles.
Runs again against the same stack (fresh ids per run), and a seed replays the same day."""

import re
import tempfile
import urllib.parse

import pytest
import redis.asyncio as redis

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.wallet.v1 import wallet_pb2, wallet_pb2_grpc
from services.billing import policy
from services.demo import scenario
from services.demo.driver import slug
from services.demo.legs import GAP_NS, ai_leg, human_leg, lay_out, stamp
from services.demo.scenario import Ring
from tests.conftest import fresh_database
from tests.system.processes import run_cli
from tests.system.stack import start_stack, use_mtls

NAMES = (
    "Acme Plumbing",
    "Bright Spark Electric",
    "Cool Breeze HVAC",
    "Rapid Rooter Drains",
    "Summit Roofing",
)


@pytest.fixture(scope="module")
async def stack(servers):
    url = await fresh_database(servers)
    redis_url = urllib.parse.urlsplit(servers.redis_url)._replace(path="/6").geturl()  # this test's own db
    # Streams and consumer groups left by an earlier run would feed this stack stale events.
    client = redis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    running = start_stack(url, redis_url, mtls=use_mtls(False))
    yield running
    running.stop()


def demo(stack, *args: str, with_database: bool = True):
    env = {k: v for k, v in stack.env.items() if with_database or k != "CALLERSYNC_DATABASE_URL"}
    # Run where no `callersync up` data dir can be found, or the demo would reconcile that stack's database.
    return run_cli("demo", *args, env=env, timeout=120, cwd=tempfile.gettempdir())


@pytest.fixture(scope="module")
def first_day(stack):
    return demo(stack, "--seed", "7")


def summary_rows(output: str) -> dict[str, list[str]]:
    """The summary table's rows by contractor name: the cells after the name, split on runs of spaces."""
    table = output.split("== summary", 1)[1].split("TOTAL", 1)[0]
    rows = {}
    for line in table.splitlines():
        for name in NAMES:
            if line.strip().startswith(name):
                rows[name] = re.split(r"\s{2,}", line.strip()[len(name) :].strip())
    return rows


def cents(text: str) -> int:
    return round(float(text.replace("$", "").replace(",", "")) * 100)


def story(output: str) -> list[str]:
    """The day's call lines without what differs per run (ids, ZIPs, phone numbers, seconds paused)."""
    lines = [line for line in output.splitlines() if re.match(r"^\s+\d+ \d{5} ", line)]
    return [re.sub(r"^\s+(\d+) \d{5} ", r"\1 ", line) for line in lines]


async def test_demo_tells_the_whole_day_and_reconciles(stack, first_day):
    out = first_day.stdout
    assert first_day.returncode == 0, out + first_day.stderr
    rows = summary_rows(out)
    assert set(rows) == set(NAMES), out
    acme = rows["Acme Plumbing"]
    assert int(acme[2]) >= 2 and "resumed" in acme[8], out
    assert re.search(
        r"^paused: Acme Plumbing, [0-9.]+ s in all, [1-9][0-9]* calls passed over while paused; resumed$",
        out,
        re.MULTILINE,
    ), out
    calls = re.search(
        r"^calls: (\d+) arrived, (\d+) billable, (\d+) free; (\d+) AI bookings$", out, re.MULTILINE
    )
    assert calls, out
    assert int(calls[1]) == 40 and int(calls[2]) > 0 and int(calls[3]) > 0 and int(calls[4]) > 0, out
    ai = rows["Bright Spark Electric"]
    assert ai[0] == "AI agent" and ai[2] == "0" and int(ai[4]) > 0 and cents(ai[5]) == 2500 * int(ai[4]), out
    credited = re.search(r"^refunds: \$([0-9,.]+) credited$", out, re.MULTILINE)
    assert credited and cents(credited[1]) > 0, out
    assert "operator approves: approved" in out and "rejected ineligible" in out, out
    assert re.search(r"caller blocked  ->  free \(nobody rung\)$", out, re.MULTILINE), out
    assert "Summit Roofing skipped (outside hours)" in out, out
    for outcome in (
        "free (voicemail)",
        "free (under 30 s)",
        "billable (dropped after 30 s)",
        "free (nobody answered)",
    ):
        assert outcome in out, outcome
    assert re.search(r"^reconcile: ok \(", out, re.MULTILINE), out


async def test_the_summary_balances_are_the_wallets_own(stack, first_day):
    run_id = re.search(r"^demo run ([0-9a-f]+):", first_day.stdout, re.MULTILINE)[1]
    rows = summary_rows(first_day.stdout)
    async with stack.channel("wallet") as channel:
        wallet = wallet_pb2_grpc.WalletServiceStub(channel)
        for name in NAMES:
            reply = await wallet.GetWallet(
                wallet_pb2.GetWalletRequest(contractor_id=f"demo-{run_id}-{slug(name)}")
            )
            assert reply.wallet.balance_cents == cents(rows[name][7]), name


def test_the_same_seed_replays_the_same_day_on_the_same_stack_and_reconcile_is_skipped_without_a_database(
    stack, first_day
):
    again = demo(stack, "--seed", "7", with_database=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reconcile: skipped: no database: CALLERSYNC_DATABASE_URL is not set" in again.stdout
    assert re.search(r"^demo run ([0-9a-f]+):", again.stdout, re.MULTILINE)[1] not in first_day.stdout
    assert story(again.stdout) == story(first_day.stdout)
    assert len(story(again.stdout)) == 40


def test_the_smallest_day(stack):
    done = demo(stack, "--contractors", "3", "--calls", "16")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(summary_rows(done.stdout)) == 3 and len(story(done.stdout)) == 16


def test_demo_says_how_to_start_the_stack_when_it_is_not_running(stack):
    done = run_cli("demo", env=dict(stack.env, CALLERSYNC_WALLET_TARGET="127.0.0.1:1"), timeout=60)
    assert done.returncode == 2
    assert "callersync up" in done.stdout
    too_small = run_cli("demo", "--calls", "3", env=stack.env, timeout=60)
    assert too_small.returncode == 2 and "at least" in too_small.stdout


@pytest.mark.parametrize(
    ("first", "second", "rule"),
    [
        (
            Ring(scenario.NO_ANSWER, 20.0),
            Ring(scenario.CONNECTED, 3.0, 30.0),
            bpb.DECISION_RULE_BILLABLE_CONNECTED_30S,
        ),
        (
            Ring(scenario.DECLINED, 4.0),
            Ring(scenario.DROPPED, 3.0, 30.5),
            bpb.DECISION_RULE_BILLABLE_DROPPED_AFTER_30S,
        ),
        (Ring(scenario.NO_ANSWER, 20.0), Ring(scenario.SHORT, 3.0, 29.999), bpb.DECISION_RULE_FREE_UNDER_30S),
        (
            Ring(scenario.NO_ANSWER, 20.0),
            Ring(scenario.VOICEMAIL, 20.0, 45.0),
            bpb.DECISION_RULE_FREE_VOICEMAIL,
        ),
    ],
)
def test_legs_are_laid_out_back_to_back_ending_now_and_billing_reads_them_as_meant(first, second, rule):
    end = 1_800_000_000 * 10**9
    legs = [human_leg("a", "r1", first), human_leg("b", "r2", second)]
    started, out = lay_out(legs, end)
    call = bpb.FinishedCall(
        call_id="c",
        zip="94103",
        caller_number="+14155550123",
        started_at=stamp(started),
        mode=bpb.CALL_MODE_HUMAN,
        legs=out,
    )
    policy.validate_call(call)
    assert policy.nanos(out[0].rang_at) == started + GAP_NS
    assert policy.nanos(out[1].rang_at) == policy.nanos(out[0].ended_at) + GAP_NS
    assert policy.nanos(out[1].ended_at) == end - GAP_NS
    assert not out[0].HasField("answered_at")
    assert policy.connected_ns(out[1]) == round(second.talk_s * 1000) * 1_000_000
    verdict = policy.rate_call(call)
    assert verdict.rule == rule
    assert verdict.legs[0].rule == bpb.DECISION_RULE_FREE_CASCADED_PAST


def test_an_ai_leg_is_free_by_the_ai_rule():
    started, out = lay_out([ai_leg("ai", "r", 95.0)], 1_800_000_000 * 10**9)
    call = bpb.FinishedCall(
        call_id="c",
        zip="94103",
        caller_number="+14155550123",
        started_at=stamp(started),
        mode=bpb.CALL_MODE_AI_AGENT,
        legs=out,
    )
    policy.validate_call(call)
    assert policy.rate_call(call).rule == bpb.DECISION_RULE_FREE_AI_MODE
