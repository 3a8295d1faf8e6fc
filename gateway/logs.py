"""Logging set-up: one line per event, text (key=value) or JSON.

Code logs through module loggers and passes structured fields with
``extra={"fields": {...}}`` (or `event()` below); the formatter renders them
as ``key=value`` pairs after the message, or as JSON members.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

LOG_LEVEL_NAMES = ("debug", "info", "warning", "error")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


_NEEDS_QUOTES = re.compile(r'[ ="\\]')


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or _NEEDS_QUOTES.search(text) or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``2026-11-21T04:00:00.123Z INFO gateway.app: gateway ready listeners=2``."""

    _second: int = -1
    _stamp: str = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line (issue 11)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        ts = self._stamp
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
        for key, value in (getattr(record, "fields", {}) or {}).items():
            out[f"{key}_" if key in out else key] = value  # never shadow ts/level/msg
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
    # Wire traces stay off until switched on (WireTrace), whatever the level.
    for name in (WIRE_SIP, WIRE_XMPP):
        logging.getLogger(name).setLevel(logging.INFO)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(_LEVELS.get(level, logging.INFO))


def event(logger: logging.Logger, level: int, message: str, /, **fields: Any) -> None:
    """Log one event with structured fields (any field name is allowed, `msg` too)."""
    logger.log(level, message, extra={"fields": fields})


# ---------------------------------------------------------------------------
# Wire trace, switched at runtime (POST /trace on the admin API).
#
# The protocol code logs every message it sends or receives at debug level on its
# own module logger (the SIP endpoint: "sip in"/"sip out" with a `wire` field when
# its `trace` flag is set; slixmpp: "SEND: ..."/"RECV: ..."). Switching a trace on
# lowers that logger's level to debug and installs a filter that lets through only
# those wire lines (everything the normal level already admits passes unchanged),
# renamed to `gateway.wire.sip` / `gateway.wire.xmpp` so that operators can grep
# or route them. Switching it off restores the logger's own level.

WIRE_SIP = "gateway.wire.sip"
WIRE_XMPP = "gateway.wire.xmpp"


@dataclass(frozen=True)
class WireSource:
    """Where one protocol's wire lines are logged, and how to recognise them."""

    wire_logger: str  # the name the traced lines are given
    source_logger: str  # the logger the protocol code logs them on
    prefixes: tuple[str, ...]  # record.msg prefixes of wire lines


WIRE_SOURCES: Mapping[str, WireSource] = {
    "sip": WireSource(WIRE_SIP, "gateway.sip.transport.endpoint", ("sip in", "sip out")),
    "xmpp": WireSource(WIRE_XMPP, "slixmpp.xmlstream.xmlstream", ("SEND:", "RECV:")),
}


class _WireFilter(logging.Filter):
    """On a source logger while its trace is on: wire lines pass (renamed), other lines
    pass only if the logger's normal level admits them."""

    def __init__(self, source: WireSource, normal_level: Callable[[], int]) -> None:
        super().__init__()
        self.source = source
        self.normal_level = normal_level

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if not msg.startswith(self.source.prefixes):
            return record.levelno >= self.normal_level()
        record.name = self.source.wire_logger
        if self.source.wire_logger == WIRE_XMPP:
            # slixmpp: "SEND: <xml>" -> msg "xmpp out", fields {wire: "<xml>"}
            text = record.getMessage()
            head, _, wire = text.partition(": ")
            record.msg = "xmpp out" if head == "SEND" else "xmpp in"
            record.args = ()
            record.fields = {**(getattr(record, "fields", None) or {}), "wire": wire}
        return True


class WireTrace:
    """Runtime switch of the SIP and XMPP wire traces.

    `hooks[kind]` is called with the new state (app.py: set `SipEndpoint.trace`, which
    adds the raw message to the endpoint's "sip in"/"sip out" lines).
    """

    def __init__(self, hooks: Mapping[str, Callable[[bool], None]] | None = None) -> None:
        self._hooks = dict(hooks or {})
        self._filters: dict[str, tuple[_WireFilter, int]] = {}

    def add_hook(self, kind: str, hook: Callable[[bool], None]) -> None:
        if kind not in WIRE_SOURCES:
            raise ValueError(f"unknown wire trace {kind!r}")
        self._hooks[kind] = hook
        hook(kind in self._filters)

    def state(self) -> dict[str, bool]:
        return {kind: kind in self._filters for kind in WIRE_SOURCES}

    def set(self, kind: str, on: bool) -> None:
        source = WIRE_SOURCES.get(kind)
        if source is None:
            raise ValueError(f"unknown wire trace {kind!r}")
        if on == (kind in self._filters):
            return
        src = logging.getLogger(source.source_logger)
        if on:
            own_level = src.level
            parent = src.parent

            def normal() -> int:
                if own_level:
                    return own_level
                return parent.getEffectiveLevel() if parent else logging.WARNING

            flt = _WireFilter(source, normal)
            src.addFilter(flt)
            src.setLevel(logging.DEBUG)
            logging.getLogger(source.wire_logger).setLevel(logging.DEBUG)
            self._filters[kind] = (flt, own_level)
        else:
            flt, own_level = self._filters.pop(kind)
            src.removeFilter(flt)
            src.setLevel(own_level)
            logging.getLogger(source.wire_logger).setLevel(logging.INFO)
        hook = self._hooks.get(kind)
        if hook is not None:
            hook(on)
        event(logging.getLogger(__name__), logging.INFO, "wire trace switched", trace=kind, on=on)

    def off(self) -> None:
        for kind in list(self._filters):
            self.set(kind, False)
