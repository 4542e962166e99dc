"""The domain's few error kinds; the server interceptor is the one place that maps them to gRPC codes."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """An error a caller can act on. `reason` is a stable UPPER_SNAKE code clients may branch on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, reason: str = "", **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__.upper()
        self.metadata = {k: str(v) for k, v in metadata.items()}


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
