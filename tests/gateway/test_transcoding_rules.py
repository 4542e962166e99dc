"""Transcoding rules the CallerSync protos do not use yet, on a proto built here: a new annotated service
needs no gateway code, and `{name=pattern}`, `body: "field"` and `response_body` behave as in grpc-gateway."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from services.gateway import templates, transcoding
from services.gateway.app import DEADLINE_S
from services.gateway.bindings import RouteTable, bindings_of

F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> F:
    label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    field = F(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    return field


def _method(
    name: str, request: str, response: str, rule: http_pb2.HttpRule
) -> descriptor_pb2.MethodDescriptorProto:
    method = descriptor_pb2.MethodDescriptorProto(
        name=name,
        input_type=f".gatewaytest.shelf.v1.{request}",
        output_type=f".gatewaytest.shelf.v1.{response}",
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    return method


@pytest.fixture(scope="module")
def shelf_service():
    file = descriptor_pb2.FileDescriptorProto(
        name="gatewaytest/shelf/v1/shelf.proto",
        package="gatewaytest.shelf.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "google/protobuf/timestamp.proto"],
    )
    book = file.message_type.add(name="Book")
    book.field.extend(
        [
            _field("name", 1, F.TYPE_STRING),
            _field("title", 2, F.TYPE_STRING),
            _field("page_count", 3, F.TYPE_INT64),
            _field("tags", 4, F.TYPE_STRING, repeated=True),
            _field("published_at", 5, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ]
    )
    update = file.message_type.add(name="UpdateBookRequest")
    update.field.extend(
        [
            _field("name", 1, F.TYPE_STRING),
            _field("book", 2, F.TYPE_MESSAGE, ".gatewaytest.shelf.v1.Book"),
            _field("notify", 3, F.TYPE_BOOL),
        ]
    )
    get = file.message_type.add(name="GetBookRequest")
    get.field.extend([_field("name", 1, F.TYPE_STRING), _field("fields", 2, F.TYPE_STRING, repeated=True)])
    service = file.service.add(name="ShelfService")
    service.method.extend(
        [
            _method(
                "UpdateBook",
                "UpdateBookRequest",
                "Book",
                http_pb2.HttpRule(patch="/v1/{name=shelves/*/books/*}", body="book"),
            ),
            _method(
                "GetBookTitle",
                "GetBookRequest",
                "Book",
                http_pb2.HttpRule(get="/v1/{name=shelves/*/books/*}:title", response_body="title"),
            ),
        ]
    )
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.AddSerializedFile(file.SerializeToString())
    return pool.FindServiceByName("gatewaytest.shelf.v1.ShelfService")


def test_a_new_annotated_service_is_routed_with_no_gateway_code(shelf_service):
    routes = RouteTable(bindings_of([shelf_service]))
    match, _ = routes.find("PATCH", "/v1/shelves/s1/books/b%202")
    assert match is not None and match.binding.method.name == "UpdateBook"
    assert match.path_values == {"name": "shelves/s1/books/b 2"}
    match, _ = routes.find("GET", "/v1/shelves/s1/books/b2:title")
    assert match is not None and match.binding.method.name == "GetBookTitle"
    assert routes.find("PATCH", "/v1/shelves/s1/chapters/b2") == (None, set())
    assert routes.find("GET", "/v1/shelves/s1/books/b2") == (None, {"PATCH"})


def test_body_field_maps_the_body_to_that_field_and_the_rest_comes_from_the_query(shelf_service):
    [binding] = [b for b in bindings_of([shelf_service]) if b.method.name == "UpdateBook"]
    request = transcoding.build_request(
        binding,
        {"name": "shelves/s1/books/b2"},
        [("notify", "true")],
        b'{"title": "Dune", "pageCount": "412", "tags": ["sf", "classic"],'
        b' "published_at": "1965-08-01T00:00:00Z"}',
    )
    assert request.name == "shelves/s1/books/b2"
    assert request.notify is True
    assert (request.book.title, request.book.page_count, list(request.book.tags)) == (
        "Dune",
        412,
        ["sf", "classic"],
    )
    assert request.book.published_at.ToJsonString() == "1965-08-01T00:00:00Z"
    with pytest.raises(transcoding.TranscodeError, match="already bound"):
        transcoding.build_request(binding, {"name": "shelves/s1/books/b2"}, [("book.title", "x")], b"{}")
    with pytest.raises(transcoding.TranscodeError, match="true or false"):
        transcoding.build_request(binding, {"name": "n"}, [("notify", "maybe")], b"")


def test_repeated_query_parameters_and_response_body(shelf_service):
    [binding] = [b for b in bindings_of([shelf_service]) if b.method.name == "GetBookTitle"]
    request = transcoding.build_request(binding, {"name": "n"}, [("fields", "a"), ("fields", "b")], b"")
    assert list(request.fields) == ["a", "b"]
    with pytest.raises(transcoding.TranscodeError, match="takes no request body"):
        transcoding.build_request(binding, {"name": "n"}, [], b'{"name": "x"}')
    book = message_factory.GetMessageClass(shelf_service.methods_by_name["GetBookTitle"].output_type)(
        title="Dune"
    )
    assert transcoding.response_json(binding, book) == "Dune"


@pytest.mark.parametrize(
    ("template", "path", "values"),
    [
        ("/v1/wallets/{contractor_id}:topUp", "/v1/wallets/a%3Ab:topUp", {"contractor_id": "a:b"}),
        ("/v1/{name=shelves/*}/books", "/v1/shelves/x/books", {"name": "shelves/x"}),
        ("/v1/files/{path=**}", "/v1/files/a/b%2Fc/d", {"path": "a/b%2Fc/d"}),
        ("/v1/*/items/{id}", "/v1/anything/items/7", {"id": "7"}),
        ("/v1/{a.b}/x", "/v1/q/x", {"a.b": "q"}),
    ],
)
def test_path_templates_match_as_in_http_proto(template, path, values):
    assert templates.parse(template).match(path) == values


@pytest.mark.parametrize("template", ["v1/x", "/v1/{id", "/v1/{1id}", "/v1/x:a:b", "/v1/{id}/{id}", "/v1//x"])
def test_malformed_templates_fail_at_start(template):
    with pytest.raises(templates.TemplateError):
        templates.parse(template)


def test_grpc_codes_map_to_http_statuses_as_in_grpc_gateway():
    import grpc

    expected = {
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "RESOURCE_EXHAUSTED": 429,
        "UNIMPLEMENTED": 501,
        "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504,
        "INTERNAL": 500,
        "UNKNOWN": 500,
        "DATA_LOSS": 500,
        "CANCELLED": 499,
        "OK": 200,
    }
    assert {code.name: transcoding.http_status(code) for code in grpc.StatusCode} == expected


async def test_grpc_timeout_header_sets_the_upstream_deadline_as_in_grpc_gateway(call, operator, recorder):
    def slack(s: float) -> float:  # gRPC rounds a deadline up to a coarser unit when it puts it on the wire
        return s * 1.02 + 0.05

    rate_card = "/callersync.billing.v1.BillingService/GetRateCard"
    status, body, _ = await call("GET", "/v1/rateCard", headers={**operator, "Grpc-Timeout": "2S"})
    assert status == 200, body
    assert 1.0 < recorder.last(rate_card).time_remaining <= slack(2.0)
    status, _, _ = await call("GET", "/v1/rateCard", headers={**operator, "Grpc-Timeout": "1500m"})
    assert 0.5 < recorder.last(rate_card).time_remaining <= slack(1.5)
    # none, or more than the gateway allows: the gateway's own deadline
    for headers in (operator, {**operator, "Grpc-Timeout": "5H"}):
        await call("GET", "/v1/rateCard", headers=headers)
        assert DEADLINE_S - 1 < recorder.last(rate_card).time_remaining <= slack(DEADLINE_S)
    calls = len(recorder.calls)
    for bad in ("2", "S", "2s", "-1S", "123456789S", "1.5S"):
        status, body, _ = await call("GET", "/v1/rateCard", headers={**operator, "Grpc-Timeout": bad})
        assert (status, body["code"]) == (400, 3), (bad, body)
        assert "Grpc-Timeout" in body["message"]
    assert len(recorder.calls) == calls  # refused before any upstream call
