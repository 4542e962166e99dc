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


def test_libraries_that_log_every_request_say_only_warnings(capsys, tmp_path):
    """The mail sink wrote six INFO lines per SMTP connection, `reconcile` two per PaymentIntent (stripe)."""
    import dataclasses
    import smtplib

    from services.gateway.web.dev import MailSink
    from services.runtime import logs
    from services.runtime.config import Settings

    settings = dataclasses.replace(Settings.from_env(), log_level="INFO", log_format="text")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sink = MailSink(tmp_path / "mail")
    try:
        logs.configure("up", settings)
        with smtplib.SMTP("127.0.0.1", sink.start(), timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: hi\r\n\r\nhello")
        import stripe

        stripe._util.log_info("Request to Stripe api", method="get", path="/v1/payment_intents/pi_1")
        logging.getLogger("callersync.up").info("ours still shows")
        logging.getLogger("stripe").warning("a stripe warning still shows")
    finally:
        sink.stop()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("mail.log", "stripe"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert len(list(sink.folder.glob("*.eml"))) == 1
    assert "ours still shows" in err and "a stripe warning still shows" in err
    assert "Peer" not in err and "AUTH" not in err and "Request to Stripe api" not in err, err
