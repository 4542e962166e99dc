"""Structured logs: one JSON object per line, carrying the trace id so a log line leads to its trace."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging

from opentelemetry import trace

from services.runtime.config import Settings

# The id of the RPC being served (set by the server interceptor): in every log line written while serving it,
# and in the reply's x-request-id trailer, so a caller's report leads to the lines whether tracing is on or not.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("callersync_request_id", default="")

# Libraries that log every request at INFO: aiosmtpd ("mail.log", six lines per SMTP connection to `up`'s mail
# sink) and stripe (two lines per API call: `reconcile` checks each PaymentIntent). At WARNING unless the level
# asked for is DEBUG, so what they say at INFO does not bury ours.
CHATTY_LIBRARIES = ("mail.log", "stripe")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        # Fields passed with extra={...} become keys of their own, searchable without parsing the message.
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(service: str, settings: Settings) -> None:
    """JSON lines on stderr (CALLERSYNC_LOG_FORMAT=text for humans), level from CALLERSYNC_LOG_LEVEL."""
    handler = logging.StreamHandler()
    if settings.log_format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s%(request)s"))
        handler.addFilter(_with_request_id)
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING) if root.level > logging.DEBUG
                                         else logging.NOTSET)


def _with_request_id(record: logging.LogRecord) -> bool:
    request_id = REQUEST_ID.get()
    record.request = f" request_id={request_id}" if request_id else ""
    return True
