"""Routes come from the descriptors: every google.api.http rule in the protos reaches its gRPC method."""

from __future__ import annotations

import re
import urllib.parse

from google.api import annotations_pb2
from google.protobuf.descriptor import FieldDescriptor

from callersync.billing.v1 import billing_pb2
from callersync.routing.v1 import routing_pb2
from callersync.wallet.v1 import wallet_pb2

MODULES = (wallet_pb2, billing_pb2, routing_pb2)


def annotated_rules():
    """(method, verb, path template, body) for every rule and additional binding, read here independently."""
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                top = options.Extensions[annotations_pb2.http]
                for rule in (top, *top.additional_bindings):
                    kind = rule.WhichOneof("pattern")
                    yield method, kind.upper(), getattr(rule, kind), rule.body


def sample(field: FieldDescriptor, index: int) -> str:
    if field.type == FieldDescriptor.TYPE_STRING:
        # Characters a URL must escape, to prove the gateway decodes path values.
        return "+1415 555/0123" if field.name == "caller_number" else f"{field.name}-{index}"
    return str(100 + index)


def test_the_protos_annotate_the_calls_web_frontends_need():
    names = {m.name for m, *_ in annotated_rules()}
    assert {"TopUp", "GetWallet", "ListEntries", "ResolveRefund", "SetZipRate", "BlockCaller"} <= names
    assert len(names) >= 20


async def test_every_annotated_rule_reaches_its_grpc_method(http, recorded_gateway_url, recorder, operator):
    reached = []
    for method, verb, template, body in annotated_rules():
        expected = {}

        def fill(found: re.Match[str], method=method, expected=expected) -> str:
            field_path = found.group(1)
            field = method.input_type.fields_by_name[field_path]
            value = sample(field, len(expected))
            expected[field_path] = value
            return urllib.parse.quote(value, safe="")

        path = re.sub(r"\{([a-z_.]+)(?:=[^}]*)?\}", fill, template)
        kwargs = {"json": {}} if body else {}
        async with http.request(verb, recorded_gateway_url + path, headers=operator, **kwargs) as reply:
            assert reply.status == 200, (verb, path, await reply.text())
            assert (await reply.json()) is not None
        rpc = f"/{method.containing_service.full_name}/{method.name}"
        call = recorder.last(rpc)
        for field_path, value in expected.items():
            got = getattr(call.request, field_path)
            assert str(got) == value, (rpc, field_path, got)
        assert call.metadata["x-callersync-role"] == "operator"
        assert call.metadata["x-callersync-subject"] == "ops-alice"
        reached.append(rpc)
    assert len(reached) == len(list(annotated_rules()))


async def test_unannotated_calls_are_not_exposed(http, recorded_gateway_url, recorder, operator):
    for path in ("/callersync.wallet.v1.WalletService/Reserve", "/v1/wallets/x:reserve", "/v1/calls/x:rate"):
        async with http.post(recorded_gateway_url + path, headers=operator, json={}) as reply:
            # 405 for x:reserve: as in grpc-gateway, GET /v1/wallets/{contractor_id} would take "x:reserve".
            assert reply.status in (404, 405)
    assert recorder.calls == []


async def test_query_parameters_fill_nested_timestamps_and_enums(
    http, recorded_gateway_url, recorder, operator
):
    url = recorded_gateway_url + "/v1/contractors/ctr-1/missedCalls"
    params = {"periodStart": "2024-03-01T00:00:00Z", "period_end": "2024-04-01T00:00:00Z", "pageSize": "25"}
    async with http.get(url, headers=operator, params=params) as reply:
        assert reply.status == 200, await reply.text()
    request = recorder.last("/callersync.routing.v1.RoutingService/ListMissedCalls").request
    assert request.period_start.ToJsonString() == "2024-03-01T00:00:00Z"
    assert request.period_end.ToJsonString() == "2024-04-01T00:00:00Z"
    assert request.page_size == 25
    async with http.get(
        recorded_gateway_url + "/v1/refundCases",
        headers=operator,
        params={"state": "REFUND_STATE_PENDING_REVIEW"},
    ) as reply:
        assert reply.status == 200, await reply.text()
    request = recorder.last("/callersync.billing.v1.BillingService/ListRefundCases").request
    assert billing_pb2.RefundState.Name(request.state) == "REFUND_STATE_PENDING_REVIEW"


async def test_a_body_star_call_takes_no_query_parameters(http, recorded_gateway_url, recorder, operator):
    url = recorded_gateway_url + "/v1/refundCases/case-1:resolve?reviewer=bob"
    async with http.post(url, headers=operator, json={"reviewer": "alice"}) as reply:
        assert reply.status == 400
        assert (await reply.json())["code"] == 3
    assert recorder.calls == []
