"""HTTP bindings read from the protos' descriptors: every method carrying a google.api.http annotation.

Nothing here names a call: a new annotated RPC in any `callersync.<service>.v1` package is served (and
documented in /openapi.json) without a line of gateway code.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from services.gateway import templates

PROTO_ROOT = "callersync"


@dataclasses.dataclass(frozen=True)
class Binding:
    upstream: str  # the service that answers, e.g. "wallet" (from the package callersync.wallet.v1)
    method: MethodDescriptor
    http_method: str  # GET, POST, PUT, PATCH, DELETE or a custom kind
    template: templates.PathTemplate
    body: str  # "" (no body), "*" (the whole request) or one top-level field name
    response_body: str  # "" (the whole response) or one top-level field name
    request_class: Any
    response_class: Any

    @property
    def rpc_path(self) -> str:
        """The gRPC method path, e.g. /callersync.wallet.v1.WalletService/TopUp."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def full_name(self) -> str:
        return self.method.full_name

    @property
    def path_fields(self) -> frozenset[str]:
        return frozenset(v.field_path for v in self.template.variables)


def discover_services(root: str = PROTO_ROOT) -> list[ServiceDescriptor]:
    """Every service in the generated `<root>.<service>.v<N>.*_pb2` modules."""
    package = importlib.import_module(root)
    found: dict[str, ServiceDescriptor] = {}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{root}."):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = service
    return [found[name] for name in sorted(found)]


def _rules(rule: http_pb2.HttpRule) -> Iterable[http_pb2.HttpRule]:
    yield rule
    # Nested additional_bindings are not allowed by the spec; ignored, as grpc-gateway does.
    yield from rule.additional_bindings


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise templates.TemplateError("an HttpRule without a pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


def resolve_field(message: Descriptor, field_path: str) -> FieldDescriptor:
    """The leaf field of a dotted path; every step but the last must be a singular message."""
    descriptor: Descriptor | None = message
    field: FieldDescriptor | None = None
    for name in field_path.split("."):
        if descriptor is None:
            raise templates.TemplateError(
                f"{message.full_name}: {field_path} goes through a non-message field"
            )
        field = descriptor.fields_by_name.get(name)
        if field is None:
            raise templates.TemplateError(f"{message.full_name} has no field {field_path!r}")
        if field.message_type is not None and not _is_repeated(field):
            descriptor = field.message_type
        else:
            descriptor = None
    assert field is not None
    return field


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _check(binding: Binding) -> None:
    request = binding.method.input_type
    for var in binding.template.variables:
        field = resolve_field(request, var.field_path)
        if _is_repeated(field):
            raise templates.TemplateError(f"{binding.full_name}: path variable {var.field_path} is repeated")
    for name, message in ((binding.body, request), (binding.response_body, binding.method.output_type)):
        if name not in ("", "*") and name not in message.fields_by_name:
            raise templates.TemplateError(f"{binding.full_name}: {message.full_name} has no field {name!r}")
    if binding.body not in ("", "*") and binding.body in binding.path_fields:
        raise templates.TemplateError(
            f"{binding.full_name}: body field {binding.body} is also a path variable"
        )


def bindings_of(services: Iterable[ServiceDescriptor]) -> list[Binding]:
    """Every (method, HTTP rule) pair, most specific template first; a malformed annotation raises."""
    found: list[Binding] = []
    for service in services:
        upstream = service.full_name.split(".")[1]
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            if method.client_streaming or method.server_streaming:
                continue  # unary only; no streaming call is annotated today
            top = options.Extensions[annotations_pb2.http]
            for rule in _rules(top):
                http_method, path = _verb_and_path(rule)
                binding = Binding(
                    upstream=upstream,
                    method=method,
                    http_method=http_method,
                    template=templates.parse(path),
                    body=rule.body,
                    response_body=rule.response_body,
                    request_class=message_factory.GetMessageClass(method.input_type),
                    response_class=message_factory.GetMessageClass(method.output_type),
                )
                _check(binding)
                found.append(binding)
    found.sort(key=lambda b: b.template.specificity, reverse=True)
    return found


@dataclasses.dataclass(frozen=True)
class Match:
    binding: Binding
    path_values: dict[str, str]


class RouteTable:
    """Finds the binding for (HTTP method, raw path); tells a wrong verb (405) from an unknown path (404)."""

    def __init__(self, bindings: Iterable[Binding]) -> None:
        self.bindings = list(bindings)

    def find(self, http_method: str, raw_path: str) -> tuple[Match | None, set[str]]:
        """The match for this method, else None and the methods the path does accept (empty: no such path)."""
        allowed: set[str] = set()
        for binding in self.bindings:
            values = binding.template.match(raw_path)
            if values is None:
                continue
            if binding.http_method == http_method:
                return Match(binding, values), allowed
            allowed.add(binding.http_method)
        return None, allowed
