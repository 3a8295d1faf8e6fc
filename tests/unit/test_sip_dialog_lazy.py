"""Dialogs restored from text (`remote`/`remote_target` as URI strings, parsed on first use)
behave exactly like dialogs built from parsed values; and the bench watchers' 200."""

from __future__ import annotations

import pytest

from bench.watchers import ok_response
from gateway.sip.dialog import Dialog, DialogId
from gateway.sip.headers import NameAddr
from gateway.sip.parser import parse_message
from gateway.sip.uri import parse_uri

pytestmark = pytest.mark.unit

WATCHER = "sip:alice@sip.example"
TARGET = "sip:alice@192.0.2.7:5070;transport=udp"


def dialogs() -> tuple[Dialog, Dialog]:
    common = {
        "id": DialogId("c1@h", "gw1", "a1"),
        "local": NameAddr(parse_uri("sip:juliet@xmpp.example")),
        "local_cseq": 4,
        "remote_cseq": 2,
        "local_target": NameAddr(parse_uri("sip:presence@198.51.100.1")),
    }
    lazy = Dialog(remote=WATCHER, remote_target=TARGET, **common)  # type: ignore[arg-type]
    parsed = Dialog(
        remote=NameAddr(parse_uri(WATCHER)),
        remote_target=parse_uri(TARGET),
        **common,  # type: ignore[arg-type]
    )
    return lazy, parsed


def test_text_is_kept_until_used_and_reads_back_unparsed() -> None:
    lazy, _ = dialogs()
    assert lazy.remote_uri_text() == WATCHER
    assert lazy.remote_target_text() == TARGET
    assert isinstance(lazy._remote, str) and isinstance(lazy._remote_target, str)


def test_lazy_dialog_equals_and_sends_like_the_parsed_one() -> None:
    lazy, parsed = dialogs()
    assert lazy == parsed
    a = lazy.new_request("NOTIFY", headers=[("Event", "presence")])
    b = parsed.new_request("NOTIFY", headers=[("Event", "presence")])
    assert str(a.uri) == str(b.uri) == TARGET
    assert list(a.headers) == list(b.headers)
    assert lazy.remote_uri_text() == WATCHER  # parsed now, same text
    assert lazy.to_record() == parsed.to_record()


def test_remote_target_can_be_replaced_by_a_refresh() -> None:
    lazy, _ = dialogs()
    lazy.remote_target = parse_uri("sip:alice@192.0.2.8")
    assert lazy.remote_target_text() == "sip:alice@192.0.2.8"
    assert lazy != dialogs()[1]


def test_watchers_answer_a_notify_with_its_dialog_headers() -> None:
    notify = (
        b"NOTIFY sip:w1@127.0.0.1:5999 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
        b"From: <sip:juliet@localhost>;tag=gw\r\nTo: <sip:w1@sip.localhost>;tag=f1\r\n"
        b"Call-ID: fw1-a@127.0.0.1\r\nCSeq: 3 NOTIFY\r\nMax-Forwards: 70\r\n"
        b"Event: presence\r\nSubscription-State: active;expires=60\r\nContent-Length: 0\r\n\r\n"
    )
    resp = parse_message(ok_response(notify))
    req = parse_message(notify)
    assert resp.status == 200  # type: ignore[union-attr]
    assert resp.call_id == req.call_id and resp.to_tag == "f1" and resp.from_tag == "gw"
    assert resp.cseq is not None and resp.cseq.seq == 3 and resp.cseq.method == "NOTIFY"
