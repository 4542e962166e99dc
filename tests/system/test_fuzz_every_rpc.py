"""Every RPC of every service, fed messages generated from its descriptor (hypothesis) and hand-picked
nasties, answers only with documented status codes, never UNKNOWN or INTERNAL, and writes nothing when it
refuses. The services run as real processes on a database of their own."""

import asyncio
import time
import urllib.parse

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callersync.billing.v1 import billing_pb2
from callersync.routing.v1 import routing_pb2
from callersync.wallet.v1 import wallet_pb2
from tests.conftest import fresh_database
from tests.system.stack import Fingerprinter, start_stack

MODULES = {"wallet": wallet_pb2, "billing": billing_pb2, "routing": routing_pb2}
METHODS = [
    (name, method)
    for name, module in MODULES.items()
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
INT_EDGES = [0, 1, -1, 2500, 2499, 30_000, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
TEXT_EDGES = ["", "ctr-1", "94107", "9410", "+14155550100", "14155550100", "c" * 129, "\x00", "é", "🙂" * 3,
              "00000000-0000-4000-8000-000000000000", "DROP TABLE x;"]
YEAR_9999 = 253402300799
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
        return st.builds(
            lambda s, n: {"seconds": s, "nanos": n},
            st.one_of(st.sampled_from([0, -1, YEAR_9999, 1_795_000_000]), st.integers(-62135596800, YEAR_9999)),
            st.integers(0, 999_999_999),
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
    running = start_stack(url, urllib.parse.urlsplit(servers.redis_url)._replace(path="/9").geturl())
    running.fingerprint = Fingerprinter(url)
    running.last_call_ok = True
    running.channels = {name: grpc.insecure_channel(running.target(name)) for name in MODULES}
    yield running
    for channel in running.channels.values():
        channel.close()
    running.fingerprint.close()
    running.stop()


def invoke(stack, service: str, method: d.MethodDescriptor, request):
    call = stack.channels[service].unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda raw: raw,
    )
    try:
        call(request, timeout=20)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as err:
        return err.code(), err.details()


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


def check(stack, service, method, request) -> None:
    before = settled_fingerprint(stack)
    code, details = invoke(stack, service, method, request)
    stack.last_call_ok = code == grpc.StatusCode.OK
    shown = repr(request)[:300]
    assert code in DOCUMENTED, f"{method.full_name} answered {code.name}: {details!r} to {shown}"
    if code != grpc.StatusCode.OK:
        assert details, f"{method.full_name} refused without saying why"
        assert stack.fingerprint() == before, f"{method.full_name} wrote on {code.name} to {shown}"


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
        check(stack, service, method, build(desc, values))
