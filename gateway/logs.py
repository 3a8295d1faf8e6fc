"""Logging set-up: one line per event, text (key=value) or JSON.

Code logs through module loggers and passes structured fields with
``extra={"fields": {...}}`` (or `event()` below); the formatter renders them
as ``key=value`` pairs after the message, or as JSON members.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

LOG_LEVEL_NAMES = ("debug", "info", "warning", "error")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``2026-11-21T04:00:00.123Z INFO gateway.app: gateway ready listeners=2``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{ts}.{int(record.msecs):03d}Z {record.levelname} {record.name}: {record.getMessage()}"
        )
        fields: Mapping[str, Any] = getattr(record, "fields", {}) or {}
        if fields:
            line += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            # One event, one line: the traceback is folded into a JSON string.
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    # slixmpp is chatty at debug; keep its stream dumps out unless tracing.
    logging.getLogger("slixmpp").setLevel(max(logging.INFO, _LEVELS.get(level, logging.INFO)))


def set_level(level: str) -> None:
    logging.getLogger().setLevel(_LEVELS.get(level, logging.INFO))


def event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log one event with structured fields."""
    logger.log(level, msg, extra={"fields": fields})
