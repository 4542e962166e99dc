"""The domain's few error kinds; the server interceptor is the one place that maps them to gRPC codes."""

from __future__ import annotations

import re
from typing import Any

import grpc

# Statuses travel in HTTP/2 trailers (message, then the ErrorInfo again in grpc-status-details-bin), which a
# client refuses past 16 KiB by default, answering RESOURCE_EXHAUSTED in our place. So a refusal never echoes
# a value in full: runs without spaces longer than SHOWN_RUN are cut to a prefix, a message to MAX_MESSAGE.
SHOWN_PREFIX = 64
SHOWN_RUN = 80
MAX_MESSAGE = 1024
MAX_METADATA_VALUE = 128
MAX_METADATA_KEYS = 16
_LONG_RUN = re.compile(rf"\S{{{SHOWN_RUN + 1},}}")


def shown(value: object, prefix: int = SHOWN_PREFIX) -> str:
    """A value as an error may quote it: in full when short, else its first `prefix` characters and its size."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= prefix + 16:
        return text
    return f"{text[:prefix]}…({len(text.encode('utf-8', 'replace'))} bytes)"


def clip_message(message: str) -> str:
    message = _LONG_RUN.sub(lambda m: shown(m.group(0)), message)
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}…({len(message)} characters)"
    return message


class DomainError(Exception):
    """An error a caller can act on. `reason` is a stable UPPER_SNAKE code clients may branch on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, reason: str = "", **metadata: str) -> None:
        message = clip_message(message)
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__.upper()
        self.metadata = {k[:SHOWN_PREFIX]: shown(v, MAX_METADATA_VALUE - 16)
                         for k, v in list(metadata.items())[:MAX_METADATA_KEYS]}


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Conflict(DomainError):
    """A transient clash (deadlock, serialization failure, a request still in flight): retry."""

    code = grpc.StatusCode.ABORTED


class Unavailable(DomainError):
    """PostgreSQL, Redis or a downstream service cannot be reached: retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class Overloaded(DomainError):
    """The server sheds this call to protect the ones it is running: retry after the hinted delay."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def typed_reason(enum: Any, prefix: str, reason: str) -> int:
    """The value of a contract's refusal enum (BillingRefusal, WalletRefusal) named prefix + an ErrorInfo reason;
    0, UNSPECIFIED, for a reason this version of the contract does not list."""
    name = prefix + reason
    return enum.Value(name) if name in enum.keys() else 0
