"""An OpenAPI 3.0 document built from the same bindings the gateway serves, so the two cannot drift."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from services.gateway.access import access_of
from services.gateway.bindings import Binding, resolve_field
from services.runtime.descriptors import comment

_T = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    # proto3 JSON writes 64-bit integers as strings (JavaScript numbers lose precision past 2^53).
    _T.TYPE_INT64: {"type": "string", "format": "int64"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string", "example": "a,b.c"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": "number", "nullable": True},
    "google.protobuf.FloatValue": {"type": "number", "nullable": True},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "nullable": True},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.UInt32Value": {"type": "integer", "nullable": True},
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte", "nullable": True},
}
_ERROR = {
    "type": "object",
    "description": "A google.rpc.Status: code is the gRPC code number, details carry google.rpc.ErrorInfo.",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"]},
    },
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {"google.rpc.Status": _ERROR}

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        if enum.full_name not in self.components:
            schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.values]}
            notes = {v.name: comment(f"{enum.full_name}.{v.name}") for v in enum.values}
            values = [f"- `{name}`: {note}" for name, note in notes.items() if note]
            described = "\n".join(filter(None, [comment(enum.full_name), "\n".join(values)]))
            if described:
                schema["description"] = described
            self.components[enum.full_name] = schema
        return self.ref(enum.full_name)

    def message(
        self, message: Descriptor, *, without: frozenset[str] = frozenset(), name: str = ""
    ) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        name = name or message.full_name
        if name in self.components:
            return self.ref(name)
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        if comment(message.full_name):
            schema["description"] = comment(message.full_name)
        self.components[name] = schema  # before the fields, so recursive messages terminate
        required = []
        for field in message.fields:
            if field.name in without:
                continue
            schema["properties"][field.json_name] = described(self.field(field), comment(field.full_name))
            behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.json_name)
        if required:
            schema["required"] = required
        return self.ref(name)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.field(field.message_type.fields_by_name["value"]),
            }
        if field.message_type is not None:
            single = self.message(field.message_type)
        elif field.enum_type is not None:
            single = self.enum(field.enum_type)
        else:
            single = dict(_SCALARS[field.type])
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single


def described(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """A schema with a description; a bare $ref is wrapped (OpenAPI 3.0 ignores a $ref's siblings)."""
    if not text:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "description": text}
    return {**schema, "description": text}


def _query_parameters(
    schemas: _Schemas,
    message: Descriptor,
    bound: frozenset[str],
    proto_prefix: str = "",
    json_prefix: str = "",
) -> list[Any]:
    """Every scalar leaf not bound by the path or body, dotted through nested messages, as grpc-gateway."""
    out = []
    for field in message.fields:
        proto_path, json_path = proto_prefix + field.name, json_prefix + field.json_name
        if proto_path in bound:
            continue
        repeated = field.is_repeated
        if field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
            if not repeated and proto_path.count(".") < 2:  # depth-limited: recursive messages terminate
                out += _query_parameters(
                    schemas, field.message_type, bound, proto_path + ".", json_path + "."
                )
            continue
        if field.message_type is not None and repeated:
            continue
        param: dict[str, Any] = {
            "name": json_path,
            "in": "query",
            "required": False,
            "schema": schemas.field(field),
        }
        if comment(field.full_name):
            param["description"] = comment(field.full_name)
        if repeated:
            param.update(style="form", explode=True)
        out.append(param)
    return out


def document(bindings: Iterable[Binding], *, title: str = "CallerSync HTTP/JSON API") -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    tags: set[str] = set()
    for binding in sorted(bindings, key=lambda b: (b.template.source, b.http_method)):
        method = binding.method
        service = method.containing_service
        tags.add(service.name)
        operation_id = f"{service.name}_{method.name}"
        seen[operation_id] = seen.get(operation_id, 0) + 1
        if seen[operation_id] > 1:  # additional_bindings: OpenAPI operation ids must be unique
            operation_id += str(seen[operation_id])
        request = method.input_type
        parameters = []
        for var in binding.template.variables:
            param = {
                "name": var.field_path,
                "in": "path",
                "required": True,
                "schema": schemas.field(resolve_field(request, var.field_path)),
            }
            notes = [comment(resolve_field(request, var.field_path).full_name)]
            if var.pattern != "*":
                notes.append(f"matches the path pattern {var.pattern}")
            if any(notes):
                param["description"] = " ".join(n for n in notes if n)
            parameters.append(param)
        bound = binding.path_fields | ({binding.body} if binding.body not in ("", "*") else set())
        if binding.body != "*":
            parameters += _query_parameters(schemas, request, frozenset(bound))
        response_schema = (
            schemas.field(method.output_type.fields_by_name[binding.response_body])
            if binding.response_body
            else schemas.message(method.output_type)
        )
        access = access_of(binding)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [service.name],
            "summary": f"{service.full_name}.{method.name}",
            "description": "\n\n".join(filter(None, [
                comment(method.full_name), f"gRPC {binding.rpc_path}. Access: {access.value}."])),
            "x-grpc-method": binding.rpc_path,
            "x-callersync-access": access.name,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": response_schema}}},
                "default": {
                    "description": "An error (HTTP status from the gRPC code, grpc-gateway's table).",
                    "content": {"application/json": {"schema": schemas.ref("google.rpc.Status")}},
                },
            },
        }
        if binding.body == "*":
            body_schema = schemas.message(request, without=binding.path_fields, name=f"{operation_id}Body")
        elif binding.body:
            body_schema = schemas.field(request.fields_by_name[binding.body])
        if binding.body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        paths.setdefault(binding.template.openapi_path(), {})[binding.http_method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "v1",
            "description": "Generated at runtime from the google.api.http annotations of the protos.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name} for name in sorted(tags)],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
