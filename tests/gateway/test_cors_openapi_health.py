"""CORS for the configured origins, the OpenAPI document, and the health endpoints."""

from __future__ import annotations

from google.api import annotations_pb2

from tests.gateway.conftest import ALLOWED_ORIGIN
from tests.gateway.test_descriptor_driven_routes import annotated_rules


async def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(call, contractor):
    headers = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, _, reply = await call("OPTIONS", f"/v1/wallets/{contractor}:topUp", headers=headers)
    assert status == 204
    assert reply["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in reply["Access-Control-Allow-Methods"]
    assert "Authorization" in reply["Access-Control-Allow-Headers"]
    assert int(reply["Access-Control-Max-Age"]) > 0


async def test_a_preflight_for_the_gateways_own_media_routes_allows_get(call, contractor):
    headers = {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "authorization"}
    for path in ("/v1/calls/call-1/recording", f"/v1/contractors/{contractor}/calls/call-1/transcript"):
        status, _, reply = await call("OPTIONS", path, headers=headers)
        assert status == 204, path
        assert reply["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        assert reply["Access-Control-Allow-Methods"] == "GET, HEAD"


async def test_a_preflight_from_another_origin_is_refused(call, contractor):
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    status, body, reply = await call("OPTIONS", f"/v1/wallets/{contractor}", headers=headers)
    assert status == 403
    assert body["code"] == 7
    assert "Access-Control-Allow-Origin" not in reply


async def test_responses_carry_cors_headers_only_for_allowed_origins(call, contractor, as_contractor):
    status, _, reply = await call(
        "GET", f"/v1/wallets/{contractor}", headers={**as_contractor, "Origin": ALLOWED_ORIGIN}
    )
    assert status == 404
    assert reply["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    status, _, reply = await call(
        "GET", f"/v1/wallets/{contractor}", headers={**as_contractor, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in reply


async def test_openapi_documents_every_annotated_method(call):
    status, doc, _ = await call("GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    # The call media routes are the gateway's own (no gRPC method behind them): documented, checked below.
    operations = [op for item in doc["paths"].values() for op in item.values() if "x-grpc-method" in op]
    documented = {op["x-grpc-method"] for op in operations}
    expected = {f"/{m.containing_service.full_name}/{m.name}" for m, *_ in annotated_rules()}
    assert documented == expected
    assert len(operations) == len(list(annotated_rules()))  # additional bindings are operations too
    assert len({op["operationId"] for op in operations}) == len(operations)
    top_up = doc["paths"]["/v1/wallets/{contractor_id}:topUp"]["post"]
    assert top_up["parameters"][0] == {
        "name": "contractor_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    body_schema = doc["components"]["schemas"][
        top_up["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert set(body_schema["properties"]) == {"amountCents", "paymentReference", "idempotencyKey", "reason"}
    assert body_schema["properties"]["amountCents"] == {
        "type": "string", "format": "int64",
        "description": "At least 2500 ($25); at most CALLERSYNC_TOP_UP_MAX_CENTS when an operator set one.",
    }
    entries = doc["paths"]["/v1/wallets/{contractor_id}/entries"]["get"]
    assert {p["name"] for p in entries["parameters"] if p["in"] == "query"} == {"pageSize", "pageToken"}
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path in ("/v1/calls/{call_id}/recording", "/v1/contractors/{contractor_id}/calls/{call_id}/transcript"):
        assert "302" in doc["paths"][path]["get"]["responses"], path
    for ref in _refs(doc):
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_health_and_readiness(call):
    status, body, _ = await call("GET", "/healthz")
    assert (status, body["status"]) == (200, "SERVING")
    # The recorder standing in for billing and routing has no health service: not ready, and says which.
    status, body, _ = await call("GET", "/readyz")
    assert status == 503, body
    assert body["upstreams"] == {"wallet": "SERVING", "billing": "UNIMPLEMENTED", "routing": "UNIMPLEMENTED"}


def test_annotations_module_is_what_the_gateway_reads():
    # Guards the import the gateway relies on: google.api.http is extension 72295728 of MethodOptions.
    assert annotations_pb2.http.number == 72295728
