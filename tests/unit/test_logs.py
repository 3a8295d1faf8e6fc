"""gateway.logs: one line per event, structured fields, any field name."""

from __future__ import annotations

import io
import json
import logging

from gateway.logs import event, setup_logging


def _capture(fmt: str) -> io.StringIO:
    out = io.StringIO()
    setup_logging("debug", fmt, stream=out)
    return out


def test_text_line_has_fields_and_a_field_may_be_called_msg() -> None:
    out = _capture("text")
    event(logging.getLogger("t"), logging.INFO, "message delivered", msg="MESSAGE", status=200)
    line = out.getvalue().strip()
    assert "\n" not in line
    assert line.endswith("INFO t: message delivered msg=MESSAGE status=200")


def test_text_values_with_spaces_are_quoted_and_tracebacks_stay_on_one_line() -> None:
    out = _capture("text")
    log = logging.getLogger("t")
    event(log, logging.WARNING, "odd", reason="two words")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().strip().split("\n")
    assert len(lines) == 2
    assert 'reason="two words"' in lines[0]
    assert "ValueError: boom" in lines[1]


def test_json_lines() -> None:
    out = _capture("json")
    event(logging.getLogger("t"), logging.ERROR, "link down", domain="sip.localhost")
    data = json.loads(out.getvalue())
    assert data["msg"] == "link down" and data["level"] == "error"
    assert data["domain"] == "sip.localhost"


def test_json_field_named_like_a_reserved_key_does_not_shadow_it() -> None:
    out = _capture("json")
    event(logging.getLogger("t"), logging.INFO, "sip in", msg="MESSAGE")
    data = json.loads(out.getvalue())
    assert data["msg"] == "sip in" and data["msg_"] == "MESSAGE"
