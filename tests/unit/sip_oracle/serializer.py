"""Serialize messages to wire bytes (RFC 3261 §7): canonical long header names, one header
line per stored pair, CRLF line ends, Content-Length always set from the body (§20.14)."""

from __future__ import annotations

from tests.unit.sip_oracle.message import SipMessage, SipRequest

__all__ = ["serialize", "start_line"]


def start_line(msg: SipMessage) -> str:
    if isinstance(msg, SipRequest):
        return f"{msg.method} {msg.uri} SIP/2.0"
    return f"SIP/2.0 {msg.status} {msg.reason}"


def serialize(msg: SipMessage) -> bytes:
    """Wire form of `msg`. An existing Content-Length keeps its position (value corrected);
    otherwise one is appended. Values were validated (no CR/LF) when `Headers` was built."""
    length = str(len(msg.body))
    lines = [start_line(msg)]
    seen_length = False
    for name, value in msg.headers:
        if name == "Content-Length":
            if seen_length:
                continue
            seen_length = True
        lines.append(f"{name}: {length if name == 'Content-Length' else value}")
    if not seen_length:
        lines.append(f"Content-Length: {length}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + msg.body
