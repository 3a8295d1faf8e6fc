"""Serialize MSRP messages to wire bytes (RFC 4975 §7.1, §7.2, §9).

Header fields go out as stored, "Name: value" with CRLF; a body is separated by an extra
CRLF and followed by the CRLF that precedes the end-line (not part of the body, §7.1).
`serialize` checks the message first (`LocalProtocolError`: never emit a frame the peer
would cut elsewhere, e.g. a body holding its own end-line).
"""

from __future__ import annotations

from gateway.msrp.message import MsrpMessage, MsrpRequest, end_line

__all__ = ["serialize", "start_line"]


def start_line(msg: MsrpMessage) -> str:
    if isinstance(msg, MsrpRequest):
        return f"MSRP {msg.transaction_id} {msg.method}"
    text = f"MSRP {msg.transaction_id} {msg.code:03d}"
    return text if msg.comment is None else f"{text} {msg.comment}"


def serialize(msg: MsrpMessage) -> bytes:
    msg.check()
    lines = [start_line(msg), *(f"{name}: {value}" for name, value in msg.headers)]
    head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    tail = end_line(msg.transaction_id, msg.flag)
    if isinstance(msg, MsrpRequest) and msg.body is not None:
        return head + b"\r\n" + msg.body + b"\r\n" + tail
    return head + tail
