"""RFC 3261 §12 dialogs: creation as UAC (2xx or RFC 6665 NOTIFY) and UAS, in-dialog
request construction (§12.2.1.1, loose and strict routes), remote CSeq ordering (§12.2.2),
target refresh, the dialog table and 481, and the persistence record."""

from __future__ import annotations

import json

import pytest

from gateway.sip.deadlines import DeadlineQueue
from gateway.sip.dialog import Dialog, DialogId, DialogTable, no_such_dialog
from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.headers import parse_name_addr
from gateway.sip.message import SipMessage, SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize

VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtest"


def wire(msg: SipMessage) -> SipMessage:
    """Serialize and parse back (a Via is added to requests, as the transport would)."""
    if isinstance(msg, SipRequest) and "Via" not in msg.headers:
        msg = msg.with_headers(msg.headers.prepend("Via", VIA))
    return parse_message(serialize(msg))


def req(text: str) -> SipRequest:
    msg = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


SUBSCRIBE = """\
SUBSCRIBE sip:romeo@example.net SIP/2.0
Via: SIP/2.0/TCP x2s.example.com;branch=z9hG4bKna998sk
Max-Forwards: 70
From: <sip:juliet@example.com>;tag=j89d
To: <sip:romeo@example.net>
Call-ID: call-1
CSeq: 5 SUBSCRIBE
Contact: <sip:juliet@gw.example.com>
Event: presence
Expires: 3600
Content-Length: 0

"""


def ok_with_routes(subscribe: SipRequest, rr: list[str], contact: str) -> SipResponse:
    headers = [("Record-Route", r) for r in rr] + [("Contact", contact), ("Expires", "3600")]
    return make_response(subscribe, 200, to_tag="r-tag", headers=headers)


def notify_with_routes(rr: list[str], contact: str, cseq: int = 1) -> SipRequest:
    lines = "".join(f"Record-Route: {r}\n" for r in rr)
    return req(
        "NOTIFY sip:juliet@gw.example.com SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKn1\n"
        "Max-Forwards: 70\n"
        "From: <sip:romeo@example.net>;tag=n-tag\n"
        "To: <sip:juliet@example.com>;tag=j89d\n"
        "Call-ID: call-1\n"
        f"CSeq: {cseq} NOTIFY\n"
        f"Contact: {contact}\n"
        f"{lines}"
        "Event: presence\n"
        "Subscription-State: active;expires=3600\n"
        "Content-Length: 0\n\n"
    )


# ---------------------------------------------------------------- UAC (§12.1.2)


def test_uac_from_2xx_reverses_record_route() -> None:
    sub = req(SUBSCRIBE)
    resp = wire(
        ok_with_routes(
            sub, ["<sip:p2.example.net;lr>", "<sip:p1.example.com;lr>"], "<sip:romeo@192.0.2.9>"
        )
    )
    assert isinstance(resp, SipResponse)
    d = Dialog.as_uac(sub, resp)
    assert d.id == DialogId("call-1", "j89d", "r-tag")
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.net;lr"]
    assert str(d.remote_target) == "sip:romeo@192.0.2.9"
    assert d.local_cseq == 5 and d.remote_cseq is None
    assert str(d.local.uri) == "sip:juliet@example.com" and d.local.tag is None
    assert str(d.remote.uri) == "sip:romeo@example.net"
    assert d.secure is False


def test_uac_from_notify_keeps_record_route_order_rfc6665_4_4_1() -> None:
    """The NOTIFY creates the dialog usage; we are the UAS of that NOTIFY (§12.1.1)."""
    n = notify_with_routes(
        ["<sip:p1.example.com;lr>", "<sip:p2.example.net;lr>"], "<sip:romeo@192.0.2.9:5070>", cseq=7
    )
    d = Dialog.as_uac(req(SUBSCRIBE), n)
    assert d.id == DialogId("call-1", "j89d", "n-tag")
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.net;lr"]
    assert str(d.remote_target) == "sip:romeo@192.0.2.9:5070"
    assert d.remote_cseq == 7 and d.local_cseq == 5


def test_uac_2xx_without_to_tag_is_dropped() -> None:
    sub = req(SUBSCRIBE)
    with pytest.raises(DropMessage):
        Dialog.as_uac(sub, make_response(sub, 200, headers=[("Contact", "<sip:a@b>")]))


def test_uac_secure_flag_needs_sips_and_tls() -> None:
    sub = req(SUBSCRIBE.replace("SUBSCRIBE sip:", "SUBSCRIBE sips:"))
    n = notify_with_routes([], "<sips:romeo@192.0.2.9>")
    assert Dialog.as_uac(sub, n, tls=True).secure is True
    assert Dialog.as_uac(sub, n, tls=False).secure is False


# ---------------------------------------------------------------- UAS (§12.1.1)


def test_uas_from_subscribe() -> None:
    r = req(
        SUBSCRIBE.replace(
            "Event:",
            "Record-Route: <sip:p1.example.com;lr>\nRecord-Route: <sip:p2.example.net;lr>\nEvent:",
        )
    )
    d = Dialog.as_uas(r, "ours", contact=parse_name_addr("<sip:gw@192.0.2.2>"))
    assert d.id == DialogId("call-1", "ours", "j89d")
    assert [str(x.uri) for x in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.net;lr"]
    assert str(d.remote_target) == "sip:juliet@gw.example.com"
    assert d.remote_cseq == 5 and d.local_cseq is None
    assert str(d.local.uri) == "sip:romeo@example.net"
    assert str(d.remote.uri) == "sip:juliet@example.com"


def test_uas_needs_contact() -> None:
    r = req(SUBSCRIBE.replace("Contact: <sip:juliet@gw.example.com>\n", ""))
    with pytest.raises(RemoteProtocolError):
        Dialog.as_uas(r, "ours")


# ---------------------------------------------------------------- §12.2.1.1 requests


def _uas_dialog(routes: list[str]) -> Dialog:
    rr = "".join(f"Record-Route: {r}\n" for r in routes)
    r = req(SUBSCRIBE.replace("Event:", rr + "Event:"))
    return Dialog.as_uas(r, "ours", contact=parse_name_addr("<sip:gw@192.0.2.2>"))


def test_request_without_route_set_targets_remote_target() -> None:
    d = _uas_dialog([])
    n = d.new_request("NOTIFY", headers=[("Event", "presence")])
    assert str(n.uri) == "sip:juliet@gw.example.com"
    assert n.routes == ()
    assert "Via" not in n.headers  # the transport adds it
    assert n.max_forwards == 70
    assert n.from_ is not None and n.from_.tag == "ours"
    assert n.to is not None and n.to.tag == "j89d"
    assert n.call_id == "call-1"
    assert n.cseq is not None and (n.cseq.seq, n.cseq.method) == (1, "NOTIFY")
    assert [str(c.uri) for c in n.contacts] == ["sip:gw@192.0.2.2"]  # target refresh
    assert n.headers.get("Event") == "presence"
    again = wire(n)
    assert isinstance(again, SipRequest) and again.cseq == n.cseq


def test_loose_route_keeps_remote_target_as_request_uri() -> None:
    d = _uas_dialog(["<sip:p1.example.com;lr>", "<sip:p2.example.net;lr>"])
    n = d.new_request("NOTIFY")
    assert str(n.uri) == "sip:juliet@gw.example.com"
    assert [str(r.uri) for r in n.routes] == ["sip:p1.example.com;lr", "sip:p2.example.net;lr"]


def test_strict_route_moves_first_route_into_request_uri() -> None:
    d = _uas_dialog(["<sip:p1.example.com;method=NOTIFY>", "<sip:p2.example.net;lr>"])
    n = d.new_request("NOTIFY")
    assert str(n.uri) == "sip:p1.example.com"  # `method` is not allowed in a Request-URI
    assert [str(r.uri) for r in n.routes] == ["sip:p2.example.net;lr", "sip:juliet@gw.example.com"]


def test_cseq_increments_and_contact_only_on_target_refresh() -> None:
    d = _uas_dialog([])
    seqs = [d.new_request(m).cseq for m in ("NOTIFY", "MESSAGE", "NOTIFY")]
    assert [(c.seq, c.method) for c in seqs if c] == [(1, "NOTIFY"), (2, "MESSAGE"), (3, "NOTIFY")]
    assert d.new_request("MESSAGE").contacts == ()
    assert d.local_cseq == 4


def test_uac_refresh_continues_local_cseq() -> None:
    d = Dialog.as_uac(req(SUBSCRIBE), notify_with_routes([], "<sip:romeo@192.0.2.9>"))
    r = d.new_request("SUBSCRIBE", headers=[("Expires", "0")])
    assert r.cseq is not None and r.cseq.seq == 6
    assert r.to is not None and r.to.tag == "n-tag"
    assert r.from_ is not None and r.from_.tag == "j89d"
    assert [str(c.uri) for c in r.contacts] == ["sip:juliet@gw.example.com"]


# ---------------------------------------------------------------- §12.2.2 remote requests


def test_remote_cseq_ordering_lower_is_500() -> None:
    d = Dialog.as_uac(req(SUBSCRIBE), notify_with_routes([], "<sip:romeo@192.0.2.9>", cseq=4))
    d.accept_remote_request(notify_with_routes([], "<sip:romeo@192.0.2.9>", cseq=5))
    assert d.remote_cseq == 5
    with pytest.raises(RemoteProtocolError) as err:
        d.accept_remote_request(notify_with_routes([], "<sip:romeo@192.0.2.9>", cseq=3))
    assert err.value.status == 500
    assert d.remote_cseq == 5


def test_target_refresh_updates_remote_target() -> None:
    d = Dialog.as_uac(req(SUBSCRIBE), notify_with_routes([], "<sip:romeo@192.0.2.9>"))
    d.accept_remote_request(notify_with_routes([], "<sip:romeo@198.51.100.4>", cseq=2))
    assert str(d.remote_target) == "sip:romeo@198.51.100.4"
    # the route set never changes (§12.2)
    d.accept_remote_request(notify_with_routes(["<sip:px.example;lr>"], "<sip:r@x>", cseq=3))
    assert d.route_set == ()


def test_2xx_to_refresh_updates_remote_target() -> None:
    d = Dialog.as_uac(req(SUBSCRIBE), notify_with_routes([], "<sip:romeo@192.0.2.9>"))
    refresh = wire(d.new_request("SUBSCRIBE"))
    assert isinstance(refresh, SipRequest)
    d.accept_response(make_response(refresh, 200, headers=[("Contact", "<sip:romeo@192.0.2.99>")]))
    assert str(d.remote_target) == "sip:romeo@192.0.2.99"
    d.accept_response(make_response(refresh, 500, headers=[("Contact", "<sip:x@192.0.2.1>")]))
    assert str(d.remote_target) == "sip:romeo@192.0.2.99"


# ---------------------------------------------------------------- table and 481


def test_dialog_table_match_full_then_half_and_481() -> None:
    table: DialogTable[str] = DialogTable()
    d = _uas_dialog([])
    table.add(d.id, "served")
    table.add_half("call-2", "watch-tag", "watching")
    incoming = req(
        "NOTIFY sip:x@y SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKq\n"
        "From: <sip:a@b>;tag=whatever\nTo: <sip:c@d>;tag=watch-tag\nCall-ID: call-2\n"
        "CSeq: 1 NOTIFY\nContent-Length: 0\n\n"
    )
    assert table.match(incoming) == "watching"
    in_dialog = d.new_request("MESSAGE")
    # what the peer would send us: tags swapped
    mirror = in_dialog.with_headers(
        in_dialog.headers.set("From", "<sip:juliet@example.com>;tag=j89d").set(
            "To", "<sip:romeo@example.net>;tag=ours"
        )
    )
    assert table.match(mirror) == "served"
    stranger = mirror.with_headers(mirror.headers.set("To", "<sip:romeo@example.net>;tag=gone"))
    assert table.match(stranger) is None
    resp = no_such_dialog(wire(stranger))  # type: ignore[arg-type]
    assert resp.status == 481 and resp.to_tag == "gone"
    assert table.remove(d.id) == "served" and table.match(mirror) is None
    assert len(table) == 1


def test_request_without_to_tag_matches_nothing() -> None:
    table: DialogTable[str] = DialogTable()
    table.add_half("call-1", "", "x")
    assert table.match(req(SUBSCRIBE)) is None


# ---------------------------------------------------------------- persistence


def test_dialog_record_round_trip_through_json() -> None:
    d = _uas_dialog(["<sip:p1.example.com>", "<sip:p2.example.net;lr>"])
    d.new_request("NOTIFY")
    rec = json.loads(json.dumps(d.to_record()))
    back = Dialog.from_record(rec)
    assert back == d
    assert back.new_request("NOTIFY").cseq == d.new_request("NOTIFY").cseq
    assert str(Dialog.from_record(rec).request_target()[0]) == "sip:p1.example.com"


# ---------------------------------------------------------------- deadline queue


def test_deadline_queue_orders_supersedes_and_cancels() -> None:
    q: DeadlineQueue[str] = DeadlineQueue()
    q.set("a", 5.0)
    q.set("b", 3.0)
    q.set("c", 4.0)
    q.set("b", 6.0)  # supersedes
    q.cancel("c")
    q.set("d", None)
    assert q.peek() == (5.0, "a") and len(q) == 2 and "c" not in q
    assert q.pop_due(5.5) == ["a"]
    assert q.pop_due(5.9) == []
    assert q.get("b") == 6.0 and q.pop_due(6.0) == ["b"] and q.peek() is None


def test_deadline_queue_holds_100k_and_stays_compact() -> None:
    q: DeadlineQueue[int] = DeadlineQueue()
    n = 100_000
    for k in range(n):
        q.set(k, float((k * 7919) % n))
    for k in range(0, n, 2):  # reschedule half later
        q.set(k, float(n + k))
    for k in range(1, n, 4):  # cancel a quarter
        q.cancel(k)
    assert len(q) == n - n // 4
    assert len(q._heap) <= 2 * len(q) + 64  # stale entries are compacted away
    due = q.pop_due(float(2 * n))
    assert len(due) == n - n // 4 and len(q) == 0
    times = [float((k * 7919) % n) if k % 2 else float(n + k) for k in due]
    assert times == sorted(times)
