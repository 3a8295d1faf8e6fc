"""`invite_handler` (issue 18): a new INVITE passes the trust gate like a MESSAGE (its From
becomes the XMPP sender of a whole chat); in-dialog requests do not go through it again."""

from __future__ import annotations

import pytest

from gateway.bridge.dispatch import invite_handler
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message

pytestmark = pytest.mark.unit


def invite(to_tag: str | None) -> SipRequest:
    to = "<sip:juliet@localhost>" + (f";tag={to_tag}" if to_tag else "")
    head = [
        "INVITE sip:juliet@localhost SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        "From: <sip:romeo@example.com>;tag=t1",
        f"To: {to}",
        "Call-ID: c1@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: <sip:romeo@127.0.0.1:5070>",
        "Content-Length: 0",
    ]
    req = parse_message(("\r\n".join(head) + "\r\n\r\n").encode())
    assert isinstance(req, SipRequest)
    return req


class _Incoming:
    def __init__(self, req: SipRequest) -> None:
        self.request = req


class _Authorizer:
    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.asked: list[str] = []

    def authorize(self, incoming: object, kind: str) -> object | None:
        self.asked.append(kind)
        return object() if self.accept else None  # None: it answered (403/407) itself


@pytest.mark.parametrize(
    ("accept", "to_tag", "handled", "asked"),
    [
        (True, None, True, ["message"]),
        (False, None, False, ["message"]),  # refused by the gate: no session
        (False, "x1", True, []),  # a re-INVITE in an admitted dialog
    ],
)
def test_invite_gate(accept: bool, to_tag: str | None, handled: bool, asked: list[str]) -> None:
    gate = _Authorizer(accept)
    seen: list[object] = []
    handle = invite_handler(gate, seen.append)  # type: ignore[arg-type]
    handle(_Incoming(invite(to_tag)))  # type: ignore[arg-type]
    assert (bool(seen), gate.asked) == (handled, asked)
