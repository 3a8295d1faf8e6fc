"""The parser's header-name memo (`parser._NAMES`, a `gateway.memo.Memo`): a peer sending
ever new header names empties it when full; what it gives is what the general path gives,
before and after, and the names learnt at import come back at their next use."""

from __future__ import annotations

from itertools import pairwise

import pytest

from gateway.sip import parser
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message

pytestmark = pytest.mark.unit


def _request(extra: list[str]) -> bytes:
    lines = [
        "MESSAGE sip:gw@192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-m",
        "f: <sip:alice@example.org>;tag=a1",
        "To: <sip:gw@192.0.2.1>",
        "i: m@example.org",
        "CSeq: 1 MESSAGE",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_memo_is_bounded_and_answers_like_the_general_path() -> None:
    memo = parser._NAMES
    assert "Call-ID" in memo and "i" in memo  # learnt at import
    limit = memo.limit
    sizes = []
    for i in range(0, limit + 10, 50):
        names = [f"X-Peer-{j}" for j in range(i, i + 50)]
        msg = parse_message(_request([f"{n}: v" for n in names]))
        assert isinstance(msg, SipRequest)
        assert all(msg.headers.get(n.lower()) == "v" for n in names)
        sizes.append(len(memo))
        assert len(memo) <= limit
    assert any(b < a for a, b in pairwise(sizes))  # emptied on the way
    msg = parse_message(_request(["x-peer-0: again"]))
    assert isinstance(msg, SipRequest)
    assert msg.call_id == "m@example.org" and msg.from_tag == "a1"
    assert msg.headers.get("X-Peer-0") == "again"
    assert memo.peek("i") == ("Call-ID", "call-id")  # learnt again at its use
