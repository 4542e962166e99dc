"""HTTP request -> protobuf request, protobuf response -> JSON, gRPC status -> HTTP status and error body.

The rules are grpc-gateway's and Envoy's gRPC-JSON transcoder's: path variables set their fields; with
`body: "*"` the JSON body is the whole request and there are no query parameters; with `body: "field"`
the body is that field; every other field may come from the query string (`?pageSize=10&page_size=10`,
`a.b=x` for nested fields, a repeated field by repeating the key). Field names are accepted both as proto
names and as proto3 JSON (lowerCamel) names; responses use the JSON names and print every field.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # noqa: F401  (registers the detail types for JSON)

from services.gateway.bindings import Binding

# grpc-gateway's runtime.HTTPStatusFromCode, the table Envoy's transcoder follows too.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Leaf messages with a JSON string (or scalar) form: usable as a path or query value.
_SCALAR_LIKE = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}


class TranscodeError(Exception):
    """The HTTP request cannot become the gRPC request: INVALID_ARGUMENT, nothing is called."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


def error_body(code: grpc.StatusCode, message: str, details: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """grpc-gateway's error shape: the google.rpc.Status as JSON."""
    return {"code": code.value[0], "message": message, "details": list(details)}


def details_of(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> list[dict[str, Any]]:
    """The google.rpc.Status details a server attached (grpc-status-details-bin), as JSON Any objects."""
    for key, value in trailing_metadata or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        out = []
        for detail in status.details:
            try:
                out.append(json_format.MessageToDict(detail))
            except (json_format.Error, TypeError, KeyError):
                out.append({"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()})
        return out
    return []


def field_by_any_name(message: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by its proto name or its JSON (lowerCamel) name."""
    field = message.fields_by_name.get(name)
    if field is not None:
        return field
    for candidate in message.fields:
        if candidate.json_name == name:
            return candidate
    return None


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _scalar_json(field: FieldDescriptor, text: str, name: str) -> Any:
    """A query or path string as the JSON value json_format expects for this field."""
    if field.message_type is not None:
        if field.message_type.full_name == "google.protobuf.BoolValue":
            return _bool(text, name)
        return text
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _bool(text, name)
    return text  # json_format parses numbers, enums (names or numbers) and base64 bytes from strings


def _bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise TranscodeError(f"{name}={text!r}: expected true or false")


def _leaf(message: Descriptor, dotted: str, *, source: str) -> tuple[list[str], FieldDescriptor]:
    """Proto names along `dotted` (accepting JSON names) and the leaf field, which must hold a scalar."""
    names: list[str] = []
    descriptor: Descriptor | None = message
    field: FieldDescriptor | None = None
    for part in dotted.split("."):
        if descriptor is None:
            raise TranscodeError(f"{source} {dotted!r}: {names[-1]} has no fields")
        field = field_by_any_name(descriptor, part)
        if field is None:
            known = ", ".join(sorted(f.json_name for f in descriptor.fields))
            raise TranscodeError(
                f"{source} {dotted!r}: {descriptor.name} has no field {part!r} (it has: {known})"
            )
        names.append(field.name)
        is_message = field.message_type is not None and field.message_type.full_name not in _SCALAR_LIKE
        descriptor = field.message_type if is_message and not _is_repeated(field) else None
        if is_message and _is_repeated(field):
            raise TranscodeError(f"{source} {dotted!r}: a repeated message cannot be set from the URL")
    assert field is not None
    if field.message_type is not None and field.message_type.full_name not in _SCALAR_LIKE:
        raise TranscodeError(f"{source} {dotted!r} is a message; set its fields, e.g. {dotted}.<field>")
    return names, field


def _put(tree: dict[str, Any], names: list[str], value: Any) -> None:
    for name in names[:-1]:
        tree = tree.setdefault(name, {})
    tree[names[-1]] = value


def _parse_into(message: Message, tree: Any, what: str) -> None:
    try:
        json_format.ParseDict(tree, message)
    except json_format.ParseError as err:
        raise TranscodeError(f"{what}: {err}") from None
    except (TypeError, ValueError, AttributeError) as err:  # non-object where an object is due, and the like
        raise TranscodeError(f"{what}: {err}") from None
    except RecursionError:
        raise TranscodeError(f"{what}: nested too deeply for {message.DESCRIPTOR.name}") from None


# No request message of ours nests deeper than a handful of levels; json.loads recurses once per level (and
# raises RecursionError, a 500, near 1000), so anything deeper is refused before it is parsed.
MAX_JSON_DEPTH = 32
_BRACKETS = re.compile(rb'"(?:[^"\\]+|\\.)*"|[\[\]{}]')


def _nesting(body: bytes) -> int:
    """How deep the body's arrays and objects nest (brackets inside strings do not count); stops counting
    past MAX_JSON_DEPTH."""
    depth = deepest = 0
    for token in _BRACKETS.finditer(body):
        t = token.group()
        if t in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        elif t in (b"]", b"}"):
            depth -= 1
    return deepest


def build_request(
    binding: Binding, path_values: Mapping[str, str], query: Iterable[tuple[str, str]], body: bytes
) -> Message:
    """The gRPC request for one HTTP request. Path variables win over the body, as in grpc-gateway."""
    descriptor = binding.method.input_type
    request = binding.request_class()

    if body.strip():
        if not binding.body:
            raise TranscodeError(f"{binding.http_method} {binding.template.source} takes no request body")
        if _nesting(body) > MAX_JSON_DEPTH:
            raise TranscodeError(f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} deep; no "
                                 f"{descriptor.name} does")
        try:
            decoded = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TranscodeError(f"the request body is not JSON: {err}") from None
        except RecursionError:  # a net under _nesting: json's C parser recurses per level
            raise TranscodeError("the request body nests arrays and objects too deeply") from None
        if binding.body == "*":
            if not isinstance(decoded, dict):
                raise TranscodeError(f"the request body must be a JSON object ({descriptor.name})")
            _parse_into(request, decoded, "request body")
        else:
            _parse_into(request, {binding.body: decoded}, f"request body ({binding.body})")

    query_tree: dict[str, Any] = {}
    grouped: dict[str, list[str]] = {}
    for key, value in query:
        grouped.setdefault(key, []).append(value)
    for key, values in grouped.items():
        if binding.body == "*":
            raise TranscodeError(
                f"unexpected query parameter {key!r}: this call takes every field in the body"
            )
        names, field = _leaf(descriptor, key, source="query parameter")
        dotted = ".".join(names)
        if dotted in binding.path_fields or names[0] == binding.body:
            raise TranscodeError(
                f"query parameter {key!r} sets a field already bound by the path or the body"
            )
        if _is_repeated(field):
            _put(query_tree, names, [_scalar_json(field, v, key) for v in values])
        elif len(values) > 1:
            raise TranscodeError(f"query parameter {key!r} given {len(values)} times; it takes one value")
        else:
            _put(query_tree, names, _scalar_json(field, values[0], key))
    if query_tree:
        from_query = binding.request_class()
        _parse_into(from_query, query_tree, "query parameters")
        request.MergeFrom(from_query)

    path_tree: dict[str, Any] = {}
    for dotted, value in path_values.items():
        names, field = _leaf(descriptor, dotted, source="path variable")
        _put(path_tree, names, _scalar_json(field, value, dotted))
    if path_tree:
        from_path = binding.request_class()
        _parse_into(from_path, path_tree, "path")
        _override(request, from_path)
    return request


def _override(target: Message, source: Message) -> None:
    """Copies source's set fields into target, replacing (not merging) leaf values."""
    for field, value in source.ListFields():
        if field.message_type is not None and field.message_type.full_name not in _SCALAR_LIKE:
            _override(getattr(target, field.name), value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def response_json(binding: Binding, response: Message) -> Any:
    """The response as proto3 JSON (lowerCamel names, every field printed), or its response_body field."""
    whole = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
    if not binding.response_body:
        return whole
    field = binding.method.output_type.fields_by_name[binding.response_body]
    return whole.get(field.json_name)
