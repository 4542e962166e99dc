"""Log lines are JSON objects carrying the trace id of the call that wrote them."""

import json
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.runtime.logs import JsonFormatter


def test_a_log_line_is_json_with_the_trace_id_and_extra_fields():
    record = logging.LogRecord("callersync.rpc", logging.WARNING, __file__, 1, "refused %s", ("ctr-1",), None)
    record.contractor_id = "ctr-1"
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("call") as span:
        line = JsonFormatter("wallet").format(record)
    entry = json.loads(line)
    assert entry["message"] == "refused ctr-1"
    assert entry["level"] == "WARNING" and entry["service"] == "wallet"
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert entry["contractor_id"] == "ctr-1"


def test_outside_a_trace_there_is_no_trace_id_and_exceptions_are_kept():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert not trace.get_current_span().get_span_context().is_valid
    entry = json.loads(JsonFormatter("billing").format(record))
    assert "trace_id" not in entry
    assert "ValueError: boom" in entry["exception"]
