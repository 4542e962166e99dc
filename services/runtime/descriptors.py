"""The protos' descriptors with their comments, for the people who read them: server reflection (so `grpcurl
describe` prints what each call and field means) and the gateway's OpenAPI descriptions.

The generated _pb2 modules carry descriptors without source_code_info, to keep them small; scripts/gen_protos.py
also writes callersync/descriptors.binpb, the same files with comments and every import. Reflection answers
with those files (the rest, e.g. grpc.health.v1, from the default pool as before).
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

DESCRIPTOR_SET = "descriptors.binpb"

# FileDescriptorProto / DescriptorProto / EnumDescriptorProto / ServiceDescriptorProto field numbers, as
# source_code_info paths use them.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


@functools.cache
def file_set() -> descriptor_pb2.FileDescriptorSet:
    data = importlib.resources.files("callersync").joinpath(DESCRIPTOR_SET).read_bytes()
    return descriptor_pb2.FileDescriptorSet.FromString(data)


class _CommentedFile:
    """A FileDescriptor whose CopyToProto gives the file with its comments (FileDescriptor.CopyToProto, which
    grpc's reflection calls, always leaves source_code_info out)."""

    def __init__(self, file: FileDescriptor, commented: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
        self._file = file
        self._commented = commented
        self.name = file.name

    @property
    def dependencies(self) -> list[_CommentedFile]:
        return [_CommentedFile(d, self._commented) for d in self._file.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:  # noqa: N802  # protobuf's name
        if self._file.name in self._commented:
            proto.CopyFrom(self._commented[self._file.name])
        else:
            self._file.CopyToProto(proto)


class ReflectionPool:
    """The default pool as grpc's reflection servicer uses it, answering file lookups with commented files."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool
        self._commented = {f.name: f for f in file_set().file}

    def FindFileByName(self, name: str) -> _CommentedFile:  # noqa: N802
        return _CommentedFile(self._pool.FindFileByName(name), self._commented)

    def FindFileContainingSymbol(self, symbol: str) -> _CommentedFile:  # noqa: N802
        return _CommentedFile(self._pool.FindFileContainingSymbol(symbol), self._commented)

    def __getattr__(self, name: str) -> Any:  # FindMessageTypeByName, FindAllExtensions, ...
        return getattr(self._pool, name)


@functools.cache
def reflection_pool() -> ReflectionPool:
    return ReflectionPool(descriptor_pool.Default())


def _clean(comment: str) -> str:
    """A proto comment as prose: the `//` lines joined, one paragraph per blank line."""
    paragraphs = [" ".join(line.strip() for line in part.splitlines() if line.strip())
                  for part in comment.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _symbols(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """source_code_info path -> the full name of what it points at (messages, fields, enums, values, methods)."""
    names: dict[tuple[int, ...], str] = {}
    prefix = f"{file.package}." if file.package else ""

    def enum(path: tuple[int, ...], scope: str, e: descriptor_pb2.EnumDescriptorProto) -> None:
        names[path] = scope + e.name
        for k, value in enumerate(e.value):
            names[(*path, _ENUM_VALUE, k)] = f"{scope}{e.name}.{value.name}"

    def message(path: tuple[int, ...], scope: str, m: descriptor_pb2.DescriptorProto) -> None:
        full = scope + m.name
        names[path] = full
        for k, field in enumerate(m.field):
            names[(*path, _MESSAGE_FIELD, k)] = f"{full}.{field.name}"
        for k, nested in enumerate(m.nested_type):
            message((*path, _MESSAGE_NESTED, k), full + ".", nested)
        for k, nested_enum in enumerate(m.enum_type):
            enum((*path, _MESSAGE_ENUM, k), full + ".", nested_enum)

    for i, m in enumerate(file.message_type):
        message((_FILE_MESSAGE, i), prefix, m)
    for i, e in enumerate(file.enum_type):
        enum((_FILE_ENUM, i), prefix, e)
    for i, service in enumerate(file.service):
        names[(_FILE_SERVICE, i)] = prefix + service.name
        for k, method in enumerate(service.method):
            names[(_FILE_SERVICE, i, _SERVICE_METHOD, k)] = f"{prefix}{service.name}.{method.name}"
    return names


@functools.cache
def comments() -> dict[str, str]:
    """Full name (package.Message, package.Message.field, package.Service.Method, package.Enum.VALUE) -> its
    leading comment as prose."""
    out: dict[str, str] = {}
    for file in file_set().file:
        names = _symbols(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name is not None and location.leading_comments.strip():
                out[name] = _clean(location.leading_comments)
    return out


def comment(full_name: str) -> str:
    return comments().get(full_name, "")
