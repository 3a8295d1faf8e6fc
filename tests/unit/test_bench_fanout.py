"""The presence fan-out's bare baseline (bench/baseline.py --fanout): presence stanzas from
the component stream become one canned NOTIFY each, numbered as bench/watchers.py numbers
its watchers, and the watchers' 200 to it matches; no sockets (a stub transport)."""

from __future__ import annotations

import asyncio

import pytest

from bench import baseline, watchers
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message

pytestmark = pytest.mark.unit


class _Udp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def test_canned_notify_is_a_valid_notify_for_that_watcher() -> None:
    data = baseline.canned_notify(b"42", "sip.localhost", 5070, 3, b"fanout-1")
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    assert msg.method == "NOTIFY"
    assert msg.call_id == "fw42-bare@127.0.0.1"
    assert msg.headers.get("Subscription-State") == "active;expires=3600"
    assert b"<note>fanout-1</note>" in msg.body
    assert 600 < len(data) < 1200  # about the gateway's NOTIFY with a PIDF
    ok = parse_message(watchers.ok_response(data))
    assert isinstance(ok, SipResponse)
    assert ok.status == 200
    assert ok.call_id == msg.call_id
    assert ok.headers.get("Via") == msg.headers.get("Via")


def _bare(stream: bytes) -> tuple[baseline.Baseline, _Udp]:
    bare = baseline.Baseline("sip.localhost", ("127.0.0.1", 9))
    udp = _Udp()
    bare.udp = udp  # type: ignore[assignment]

    async def feed() -> None:
        reader = asyncio.StreamReader()
        for i in range(0, len(stream), 7):  # stanzas split across reads
            reader.feed_data(stream[i : i + 7])
        reader.feed_eof()
        await bare.read_presence(reader)

    asyncio.run(feed())
    return bare, udp


def test_one_notify_per_presence_to_a_watcher() -> None:
    stream = (
        b"<presence from='juliet@localhost/r' to='w0@sip.localhost'/>"
        b"<presence from='juliet@localhost/r' to='w17@sip.localhost' xmlns='jabber:client'>"
        b"<show>away</show><status>fanout-9</status></presence>"
        b"<presence to='w3@sip.localhost' type='unavailable'/>"
        b"<presence to='w4@sip.localhost' type='probe'/>"  # not a change: dropped
        b"<presence to='romeo@sip.localhost'><status>x</status></presence>"  # not a watcher
        b"<message to='w5@sip.localhost'><body>hi</body></message>"
    )
    bare, udp = _bare(stream)
    ids = [parse_message(d).call_id for d, _ in udp.sent]
    assert ids == ["fw0-bare@127.0.0.1", "fw17-bare@127.0.0.1", "fw3-bare@127.0.0.1"]
    assert b"<note>fanout-9</note>" in udp.sent[1][0]
    assert all(addr == ("127.0.0.1", 9) for _, addr in udp.sent)
    assert bare.fanout["presence_in"] == bare.fanout["notify_out"] == 3
    assert bare.fanout["last_presence"] > 0
    assert {k: v[0] for k, v in bare.notes.items()} == {"": 2, "fanout-9": 1}


def test_watcher_status_parses_the_canned_notify() -> None:
    ws = watchers.Watchers(("127.0.0.1", 9), "sip.localhost", "sip:juliet@localhost", 3)
    udp = _Udp()
    ws.transport = udp  # type: ignore[assignment]
    ws.mark("fanout-5")
    ws.datagram_received(baseline.canned_notify(b"2", "sip.localhost", 9, 1, b"fanout-5"), ("h", 1))
    st = ws.status()
    assert (st["active"], st["with_body"], st["notifies"], ws.marked) == (1, 1, 1, 1)
    assert udp.sent and udp.sent[0][0].startswith(b"SIP/2.0 200 OK")
