"""Every RPC of every service, fed messages generated from its descriptor (hypothesis) and hand-picked
nasties, answers only with documented status codes, never UNKNOWN or INTERNAL, and writes nothing when it
refuses. The services run as real processes on a database of their own."""

import asyncio
import datetime as dt
import time
import urllib.parse
import uuid

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callersync.billing.v1 import billing_pb2
from callersync.wallet.v1 import wallet_pb2
from services.billing.access import ACCESS as BILLING_ACCESS
from services.gateway.bindings import discover_services
from services.routing.access import ACCESS as ROUTING_ACCESS
from services.runtime import authz
from services.runtime.interceptors import _timestamp_paths
from services.wallet.access import ACCESS as WALLET_ACCESS
from tests.billing.calls import call, connected
from tests.billing.support import at
from tests.conftest import fresh_database
from tests.system.stack import Fingerprinter, identity_for, start_stack, use_mtls

MODULES = ("wallet", "billing", "routing")
ACCESS_TABLES = {"wallet": WALLET_ACCESS, "billing": BILLING_ACCESS, "routing": ROUTING_ACCESS}
# Every RPC of every service in the generated code (callersync.<service>.v1): a new RPC is fuzzed unasked.
METHODS = [
    (service.full_name.split(".")[1], method)
    for service in discover_services()
    for method in service.methods
]
assert {name for name, _ in METHODS} == set(MODULES), "a service without a server in the stack"
# RESOURCE_EXHAUSTED is not among them: clients retry it (it means "shed load, come back"), so a request that
# can never succeed must not get it. The one exception is a request above the servers' 4 MiB receive limit,
# refused by gRPC itself before any handler (test_hand_picked_nasties).
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}
# A refusal's message stays short however long the values it quotes: the status rides in HTTP/2 trailers,
# which a client refuses past 16 KiB (answering RESOURCE_EXHAUSTED in the server's place).
MAX_DETAILS = 1200
MAX_TRAILERS = 8 * 1024
INT_EDGES = [0, 1, -1, 2500, 2499, 30_000, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
TEXT_EDGES = ["", "ctr-1", "94107", "9410", "+14155550100", "14155550100", "c" * 129, "\x00", "é", "🙂" * 3,
              "00000000-0000-4000-8000-000000000000", "DROP TABLE x;"]
YEAR_9999 = 253402300799
# Outside google.protobuf.Timestamp's range (year 1 to 9999, nanos 0 to 999,999,999): INVALID_ARGUMENT.
BAD_STAMPS = [(2**62, 0), (-(2**62), 0), (YEAR_9999 + 1, 0), (-62135596801, 0), (1_795_000_000, 2_000_000_000),
              (1_795_000_000, -1)]
_INT_RANGES = {
    d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}


def scalar(field: d.FieldDescriptor, depth: int) -> st.SearchStrategy:
    if field.type in _INT_RANGES:
        lo, hi = _INT_RANGES[field.type]
        return st.one_of(st.sampled_from([v for v in INT_EDGES if lo <= v <= hi]), st.integers(lo, hi))
    if field.type == d.FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(TEXT_EDGES), st.text(max_size=24))
    if field.type == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=16)
    if field.type == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32)
    if field.type == d.FieldDescriptor.TYPE_ENUM:
        # Known values and unknown ones (proto3 enums are open).
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 99))
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return st.one_of(
            st.builds(
                lambda s, n: {"seconds": s, "nanos": n},
                st.one_of(st.sampled_from([0, -1, YEAR_9999, 1_795_000_000]), st.integers(-62135596800, YEAR_9999)),
                st.integers(0, 999_999_999),
            ),
            st.sampled_from([{"seconds": s, "nanos": n} for s, n in BAD_STAMPS]),
        )
    if depth >= 3:
        return st.just({})
    return message_fields(field.message_type, depth + 1)


def message_fields(desc: d.Descriptor, depth: int = 0) -> st.SearchStrategy:
    strategies = {}
    for field in desc.fields:
        one = scalar(field, depth)
        if field.is_repeated and field.message_type and field.message_type.GetOptions().map_entry:
            continue  # map fields: left empty
        if field.is_repeated:
            one = st.lists(one, max_size=3)
        strategies[field.name] = st.one_of(st.none(), one)
    return st.fixed_dictionaries(strategies)


def build(desc: d.Descriptor, values: dict):
    msg = message_factory.GetMessageClass(desc)()
    fill(msg, values)
    return msg


def fill(msg, values: dict) -> None:
    for name, value in values.items():
        if value is None:
            continue
        field = msg.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name)
        if field.is_repeated:
            for item in value:
                if field.message_type:
                    fill(target.add(), item)
                else:
                    target.append(item)
        elif field.message_type:
            fill(target, value)
        else:
            setattr(msg, name, value)


@pytest.fixture(scope="module")
def stack(servers):
    url = asyncio.run(fresh_database(servers))
    running = start_stack(url, urllib.parse.urlsplit(servers.redis_url)._replace(path="/9").geturl(),
                          mtls=use_mtls(True))
    running.fingerprint = Fingerprinter(url)
    running.last_call_ok = True
    # One channel per service and identity the fuzzed methods are called with (under mutual TLS each method is
    # called as an identity its access table admits, so the request reaches the handler).
    running.channels = {
        (name, identity): running.sync_channel(name, identity, options=[
            # What a client accepts by default, said out loud: the servers must keep their statuses under it.
            ("grpc.max_metadata_size", 16 * 1024)])
        for name, identity in {(service, caller(service, m)) for service, m in METHODS}
    }
    yield running
    for channel in running.channels.values():
        channel.close()
    running.fingerprint.close()
    running.stop()


def caller(service: str, method: d.MethodDescriptor) -> str:
    """An identity the method's access table admits: an operator where operators may, else the service's
    caller (the telephony engine, billing, routing)."""
    roles = ACCESS_TABLES[service][method.name]
    return identity_for(authz.OPERATOR if authz.OPERATOR in roles else min(roles))


def invoke(stack, service: str, method: d.MethodDescriptor, request):
    call = stack.channels[service, caller(service, method)].unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda raw: raw,
    )
    try:
        call(request, timeout=20)
        return grpc.StatusCode.OK, "", ()
    except grpc.RpcError as err:
        return err.code(), err.details(), err.trailing_metadata() or ()


def settled_fingerprint(stack) -> tuple:
    """After an accepted call, its consequences land asynchronously (outbox relays, routing applying billing's
    events): wait until the database stops changing, so they are not blamed on the next, refused call."""
    previous = stack.fingerprint()
    if not stack.last_call_ok:
        return previous
    for _ in range(40):
        time.sleep(0.1)
        current = stack.fingerprint()
        if current == previous:
            return current
        previous = current
    return previous


def check(stack, service, method, request, documented=DOCUMENTED) -> grpc.StatusCode:
    before = settled_fingerprint(stack)
    code, details, trailers = invoke(stack, service, method, request)
    stack.last_call_ok = code == grpc.StatusCode.OK
    shown = repr(request)[:300]
    assert code in documented, f"{method.full_name} answered {code.name}: {details[:300]!r} to {shown}"
    if code != grpc.StatusCode.OK:
        assert details, f"{method.full_name} refused without saying why"
        assert len(details) <= MAX_DETAILS, f"{method.full_name} answered {len(details)} characters to {shown}"
        size = sum(len(k) + len(v) for k, v in trailers)
        assert size <= MAX_TRAILERS, f"{method.full_name} sent {size} bytes of trailers to {shown}"
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:  # gRPC's own size refusal comes before any handler
            assert dict(trailers).get("x-request-id"), f"{method.full_name} refused without a request id"
        assert stack.fingerprint() == before, f"{method.full_name} wrote on {code.name} to {shown}"
    return code


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_generated_requests_get_documented_answers_and_refusals_write_nothing(stack, service, method):
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(message_fields(method.input_type))
    def run(values):
        check(stack, service, method, build(method.input_type, values))

    run()


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_hand_picked_nasties(stack, service, method):
    desc = method.input_type
    huge = "x" * (10 * 1024 * 1024)
    cases = [{}]
    for field in desc.fields:
        if field.is_repeated:
            continue
        if field.type == d.FieldDescriptor.TYPE_STRING:
            cases.append({field.name: huge})
        elif field.type in _INT_RANGES and field.type not in (d.FieldDescriptor.TYPE_UINT32,
                                                              d.FieldDescriptor.TYPE_UINT64):
            cases += [{field.name: _INT_RANGES[field.type][0]}, {field.name: _INT_RANGES[field.type][1]}]
        elif field.type == d.FieldDescriptor.TYPE_ENUM:
            cases.append({field.name: 12345})
    for values in cases:
        # 10 MiB is past every server's receive limit: gRPC refuses it before our code sees it.
        too_big = any(v is huge for v in values.values())
        check(stack, service, method, build(desc, values),
              DOCUMENTED | {grpc.StatusCode.RESOURCE_EXHAUSTED} if too_big else DOCUMENTED)


LONG = "x" * (64 * 1024)


def saturated(desc: d.Descriptor, text, stamp, depth: int = 0) -> dict:
    """Every field of `desc` set, recursively (a repeated field once, maps left empty): strings to text(field),
    Timestamps to stamp(field), numbers to 1, enums to their first real value."""
    values: dict = {}
    for field in desc.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
            one = stamp(field)
        elif field.message_type is not None:
            if depth >= 4:
                continue
            one = saturated(field.message_type, text, stamp, depth + 1)
        elif field.type == d.FieldDescriptor.TYPE_STRING:
            one = text(field)
        elif field.type == d.FieldDescriptor.TYPE_BYTES:
            one = b"x"
        elif field.type == d.FieldDescriptor.TYPE_BOOL:
            one = True
        elif field.type == d.FieldDescriptor.TYPE_ENUM:
            one = field.enum_type.values[min(1, len(field.enum_type.values) - 1)].number
        elif field.type in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
            one = 1.0
        else:
            one = 1
        values[field.name] = [one] if field.is_repeated else one
    return values


def _paths(desc: d.Descriptor, kind, depth: int = 0, prefix: tuple = ()) -> list[tuple]:
    """The paths (field names) to every field of `desc` that `kind(field)` picks, through nested messages."""
    found = []
    for field in desc.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        if kind(field):
            found.append((*prefix, field.name))
        elif field.message_type is not None and field.message_type.full_name != "google.protobuf.Timestamp" \
                and depth < 4:
            found += _paths(field.message_type, kind, depth + 1, (*prefix, field.name))
    return found


def _is_string(field: d.FieldDescriptor) -> bool:
    return field.type == d.FieldDescriptor.TYPE_STRING


def _is_stamp(field: d.FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp"


def _set_path(values: dict, path: tuple, value) -> None:
    for name in path[:-1]:
        values = values[name][0] if isinstance(values[name], list) else values[name]
    values[path[-1]] = [value] if isinstance(values[path[-1]], list) else value


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_every_string_64k_and_every_timestamp_out_of_range(stack, service, method):
    """Each RPC, by its descriptor: every string field 64 KB (all at once, then one at a time in an otherwise
    plausible request) and every Timestamp outside protobuf's range (all at once, then one at a time). No
    INTERNAL, no UNKNOWN, no RESOURCE_EXHAUSTED, a short message, nothing written."""
    desc = method.input_type
    now = {"seconds": int(time.time()) - 600, "nanos": 0}
    cases = [saturated(desc, lambda f: LONG, lambda f: dict(now)),
             saturated(desc, lambda f: f"fz-{f.name}", lambda f: {"seconds": 2**62, "nanos": 0})]
    for path in _paths(desc, _is_string):
        case = saturated(desc, lambda f: "94107" if "zip" in f.name else f"fz-{f.name}", lambda f: dict(now))
        _set_path(case, path, LONG)
        cases.append(case)
    for path in _paths(desc, _is_stamp):
        for seconds, nanos in BAD_STAMPS[:1] + BAD_STAMPS[-2:]:
            case = saturated(desc, lambda f: "94107" if "zip" in f.name else f"fz-{f.name}", lambda f: dict(now))
            _set_path(case, path, {"seconds": seconds, "nanos": nanos})
            cases.append(case)
    for values in cases:
        check(stack, service, method, build(desc, values))
    if _paths(desc, _is_stamp):
        # An out-of-range Timestamp is never accepted. The runtime refuses the request for one outside repeated
        # messages; inside them (a RateCalls batch) the handler refuses the item, in an OK reply
        # (tests/billing/test_facts_from_the_future.py checks that item's refusal).
        expected = {grpc.StatusCode.INVALID_ARGUMENT}
        if not _timestamp_paths(desc):
            expected.add(grpc.StatusCode.OK)
        bad_stamp_codes = {check(stack, service, method, build(desc, saturated(
            desc, lambda f: f"fz-{f.name}", lambda f, s=s, n=n: {"seconds": s, "nanos": n}))) for s, n in BAD_STAMPS}
        assert bad_stamp_codes <= expected, bad_stamp_codes


# Moments no fact may claim (services/billing/freshness.py): later than now plus the clock skew, or before
# CallerSync priced anything (2020-01-01), down to year 1. Each is a whole fact moved in time (a call's start and
# every leg), so the request is otherwise one the service bills.
def fact_moments() -> dict[str, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return {"an hour ahead": now + dt.timedelta(hours=1), "year 9999": dt.datetime(9999, 12, 31, 23, tzinfo=dt.UTC),
            "2019": dt.datetime(2019, 12, 31, 12, tzinfo=dt.UTC), "year 1": dt.datetime(1, 1, 1, 1, tzinfo=dt.UTC)}


REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
BY_NAME = {(service, method.name): method for service, method in METHODS}


def call_ok(stack, service: str, name: str, request):
    """Calls a method that must answer OK; returns its decoded reply."""
    method = BY_NAME[service, name]
    rpc = stack.channels[service, caller(service, method)].unary_unary(
        f"/{method.containing_service.full_name}/{name}", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=message_factory.GetMessageClass(method.output_type).FromString)
    reply = rpc(request, timeout=20)
    stack.last_call_ok = True
    return reply


@pytest.fixture(scope="module")
def priced(stack):
    """A contractor with money and a ZIP with a price since 2020, so a fact at a plausible moment is billed."""
    contractor, zip_code = f"ctr-facts-{uuid.uuid4().hex[:8]}", f"{uuid.uuid4().int % 100_000:05d}"
    call_ok(stack, "wallet", "TopUp", wallet_pb2.TopUpRequest(
        contractor_id=contractor, amount_cents=1_000_000, payment_reference=f"wire-{contractor}",
        idempotency_key=f"k-{contractor}", reason="fuzz facts"))
    call_ok(stack, "billing", "SetZipRate", billing_pb2.SetZipRateRequest(
        zip=zip_code, rate_cents=4500, effective_from=at("2020-01-01T00:00:00+00:00"), set_by="fuzz"))
    return contractor, zip_code


def fact_request(name: str, contractor: str, zip_code: str, moment: dt.datetime):
    if name == "RecordBooking":
        return billing_pb2.RecordBookingRequest(booking_id=f"bk-{uuid.uuid4().hex[:10]}", call_id="call-ai-fz",
                                                contractor_id=contractor, scheduled_at=at(moment))
    finished = call(connected(contractor, 60.0, start=moment), zip_code=zip_code, start=moment)
    if name == "RateCalls":
        return billing_pb2.RateCallsRequest(calls=[finished])
    return billing_pb2.RateCallRequest(call=finished)


@pytest.mark.parametrize("name", ["RateCall", "RateCalls", "RecordBooking"])
def test_a_fact_from_the_future_or_before_2020_is_refused_and_bills_nothing(stack, priced, name):
    contractor, zip_code = priced
    billed = settled_fingerprint(stack)
    reply = call_ok(stack, "billing", name, fact_request(name, contractor, zip_code, dt.datetime.now(dt.UTC)
                                                         - dt.timedelta(minutes=5)))
    assert name != "RateCalls" or reply.results[0].decision.billable, reply
    assert settled_fingerprint(stack) != billed, f"{name}: the plausible fact was not billed, so this proves nothing"
    for label, moment in fact_moments().items():
        request = fact_request(name, contractor, zip_code, moment)
        if name != "RateCalls":
            check(stack, "billing", BY_NAME["billing", name], request, REFUSED)
            continue
        # A batch refuses the item, in an OK reply.
        before = settled_fingerprint(stack)
        (result,) = call_ok(stack, "billing", name, request).results
        assert result.code in {code.value[0] for code in REFUSED}, (label, result)
        assert stack.fingerprint() == before, f"RateCalls wrote for a call at {label}"


@pytest.mark.parametrize("name", ["SetZipRate", "SetBookingFee"])
def test_a_price_effective_before_2020_is_refused_and_changes_nothing(stack, name):
    def request(moment: dt.datetime):
        if name == "SetBookingFee":
            return billing_pb2.SetBookingFeeRequest(fee_cents=2500, effective_from=at(moment), set_by="fuzz")
        return billing_pb2.SetZipRateRequest(zip=f"{uuid.uuid4().int % 100_000:05d}", rate_cents=4500,
                                             effective_from=at(moment), set_by="fuzz")

    # Accepted at a plausible moment: a new ZIP's first price from the earliest allowed one; the booking fee (which
    # earlier tests' bookings have already used, so it cannot change in the past) from tomorrow.
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    call_ok(stack, "billing", name, request(tomorrow if name == "SetBookingFee" else dt.datetime(2020, 1, 1,
                                                                                                  tzinfo=dt.UTC)))
    for label in ("2019", "year 1"):
        check(stack, "billing", BY_NAME["billing", name], request(fact_moments()[label]), REFUSED)
