"""In-dialog request construction with the per-dialog cached prefix (issue 11): `Dialog.
new_request` must produce exactly what the previous per-request construction
(`Dialog._new_request_reference`) produced: the same SipRequest, the same bytes, the
same CSeq progression and the same errors, over Hypothesis dialogs (route sets loose and
strict, tags, URIs with parameters, IPv6 targets, lazy remote URIs, target refreshes
between requests) and over RFC 6665 notifiers (expires values, terminated states with
reasons and retry-after, empty and non-empty bodies)."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.dialog import Dialog, DialogId
from gateway.sip.errors import LocalProtocolError, SipError
from gateway.sip.headers import NameAddr, parse_name_addr
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.notifier import Notifier, check_subscribe
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.subscription import SendNotify, StateDocument
from gateway.sip.uri import parse_uri

pytestmark = pytest.mark.unit


class _RefDialog(Dialog):
    """A dialog building every request the previous way (the oracle)."""

    __slots__ = ()

    def new_request(self, method: str, *, headers: object = (), body: bytes = b"") -> SipRequest:
        return self._new_request_reference(method, headers=headers, body=body)  # type: ignore[arg-type]


_token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
_user = st.text("abcxyz0123456789-_.!~*'()&=+$,;?/%", min_size=1, max_size=10).filter(
    lambda u: "%" not in u
)
_host = st.sampled_from(
    [
        "example.com",
        "sip.localhost",
        "192.0.2.7",
        "[::1]",
        "[2001:db8::5]",
        "gw.example.net",
        "127.0.0.1",
    ]
)
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_uri_param = st.sampled_from(
    ["", ";transport=udp", ";transport=tcp", ";lr", ";maddr=192.0.2.1", ";ob", ";x=y", ";method=X"]
)


@st.composite
def _uri(draw: st.DrawFn, /, *, user: bool = True, lr: bool | None = None) -> str:
    scheme = draw(st.sampled_from(["sip", "sips"]))
    u = f"{draw(_user)}@" if user and draw(st.booleans()) else ""
    params = "".join(draw(st.lists(_uri_param, max_size=3)))
    if lr is True:
        params += ";lr"
    elif lr is False:
        params = params.replace(";lr", "")
    return f"{scheme}:{u}{draw(_host)}{draw(_port)}{params}"


@st.composite
def _name_addr(draw: st.DrawFn, /, *, user: bool = True, lr: bool | None = None) -> NameAddr:
    display = draw(st.sampled_from(["", "Bob ", '"A Watcher" ', '"x \\"q\\"" ']))
    params = draw(st.sampled_from(["", ";expires=60", ';+sip.instance="<urn:uuid:1>"', ";p=q"]))
    return parse_name_addr(f"{display}<{draw(_uri(user=user, lr=lr))}>{params}")


@st.composite
def _routes(draw: st.DrawFn) -> tuple[NameAddr, ...]:
    n = draw(st.integers(0, 3))
    if n == 0:
        return ()
    first = draw(_name_addr(user=False, lr=draw(st.booleans())))
    rest = [draw(_name_addr(user=False)) for _ in range(n - 1)]
    return (first, *rest)


_call_id = st.one_of(
    _token.map(lambda t: f"{t}@192.0.2.1"),
    st.sampled_from(["a\r\nb", "c\nd", " padded\t"]),
)


@st.composite
def _dialog_parts(draw: st.DrawFn) -> dict[str, object]:
    lazy = draw(st.booleans())
    remote = draw(_name_addr())
    target = draw(_uri())
    return {
        "id": DialogId(draw(_call_id), draw(_token), draw(st.one_of(st.just(""), _token))),
        "local": draw(_name_addr()),
        "remote": str(remote.uri) if lazy else NameAddr(remote.uri, remote.display_name),
        "remote_target": target if lazy else parse_uri(target),
        "route_set": draw(_routes()),
        "local_cseq": draw(st.one_of(st.none(), st.integers(0, 2**31))),
        "remote_cseq": draw(st.one_of(st.none(), st.integers(0, 100))),
        "secure": draw(st.booleans()),
        "local_target": draw(st.one_of(st.none(), _name_addr())),
    }


_header = st.tuples(
    st.sampled_from(
        ["Event", "Subscription-State", "Content-Type", "X-Thing", "bad name", "i", "To", "Route"]
    ),
    st.sampled_from(
        [
            *("presence", "active;expires=60", "application/pidf+xml", " v\t", "a\rb", ""),
            *("<sip:x@example.com>;tag=9", "<sip:p.example.com;lr>", "<bad"),
        ]
    ),
)
_op = st.one_of(
    st.tuples(
        st.just("request"),
        st.sampled_from(["NOTIFY", "SUBSCRIBE", "MESSAGE", "INFO", "BYE", "BAD METHOD"]),
        st.lists(_header, max_size=3),
        st.sampled_from([b"", b"<presence/>", b"x" * 300]),
    ),
    st.tuples(st.just("refresh"), _uri(), st.just(()), st.just(b"")),
)


def _outcome(dialog: Dialog, op: tuple[str, str, list[tuple[str, str]], bytes]) -> object:
    kind, arg, headers, body = op
    if kind == "refresh":
        dialog.remote_target = parse_uri(arg)
        return None
    try:
        request = dialog.new_request(arg, headers=headers, body=body)
    except SipError as exc:
        return (type(exc), str(exc), dialog.local_cseq)
    wire = request.with_headers(request.headers.prepend("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"))
    return (request, serialize(wire), dialog.local_cseq, _views(request))


def _views(request: SipRequest) -> list[object]:
    """The parsed views a sender reads (filled in by `new_request` from its prefix)."""
    out: list[object] = []
    for name in ("to", "routes", "to_tag", "from_", "call_id", "cseq"):
        try:
            out.append(getattr(request, name))
        except Exception as exc:
            out.append((type(exc), str(exc)))
    return out


@settings(max_examples=200, deadline=None)
@given(_dialog_parts(), st.lists(_op, min_size=1, max_size=6))
def test_new_request_equals_reference(parts: dict[str, object], ops: list[object]) -> None:
    fast = Dialog(**parts)  # type: ignore[arg-type]
    ref = _RefDialog(**parts)  # type: ignore[arg-type]
    for op in ops:
        got = _outcome(fast, op)  # type: ignore[arg-type]
        want = _outcome(ref, op)  # type: ignore[arg-type]
        assert got == want
        assert fast == ref


def test_prefix_rebuilt_when_a_field_is_replaced() -> None:
    parts = {
        "id": DialogId("c1", "lt", "rt"),
        "local": parse_name_addr("<sip:juliet@localhost>"),
        "remote": "sip:w1@sip.localhost",
        "remote_target": "sip:w1@127.0.0.1:5062",
        "local_target": parse_name_addr("<sip:gw@127.0.0.1:5060>"),
    }
    fast, ref = Dialog(**parts), _RefDialog(**parts)  # type: ignore[arg-type]
    assert fast.new_request("NOTIFY") == ref.new_request("NOTIFY")
    routes = (parse_name_addr("<sip:proxy.example.com;lr>"),)
    for d in (fast, ref):  # direct assignment (not through a method) is still honoured
        d.route_set = routes
        d.local = parse_name_addr('"J" <sip:juliet@localhost>')
    got, want = fast.new_request("NOTIFY"), ref.new_request("NOTIFY")
    assert got == want
    assert got.headers.get("Route") == "<sip:proxy.example.com;lr>"
    assert got.headers.get("From") == '"J" <sip:juliet@localhost>;tag=lt'


def test_bad_prefix_raises_every_time_like_the_reference() -> None:
    parts = {
        "id": DialogId("bad\r\nid", "lt", "rt"),
        "local": parse_name_addr("<sip:juliet@localhost>"),
        "remote": "sip:w1@sip.localhost",
        "remote_target": "sip:w1@127.0.0.1",
    }
    fast, ref = Dialog(**parts), _RefDialog(**parts)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(LocalProtocolError) as a:
            fast.new_request("NOTIFY")
        with pytest.raises(LocalProtocolError) as b:
            ref.new_request("NOTIFY")
        assert str(a.value) == str(b.value) == "CR/LF in value of Call-ID"
        assert fast.local_cseq == ref.local_cseq


# ------------------------------------------------------------------ notifiers


@st.composite
def _subscribe(draw: st.DrawFn) -> bytes:
    rr = "".join(f"Record-Route: {r}\r\n" for r in draw(_routes()))
    expires = draw(st.one_of(st.just(0), st.integers(60, 7200)))
    return (
        f"SUBSCRIBE sip:juliet@localhost SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKs1\r\n"
        f"{rr}"
        "Max-Forwards: 70\r\n"
        f"From: {draw(_name_addr())};tag={draw(_token)}\r\n"
        "To: <sip:juliet@localhost>\r\n"
        f"Call-ID: {draw(_token)}@192.0.2.9\r\n"
        f"CSeq: {draw(st.integers(1, 1000))} SUBSCRIBE\r\n"
        f"Contact: {draw(_name_addr())}\r\n"
        f"Event: {draw(st.sampled_from(['presence', 'presence;id=7']))}\r\n"
        f"Expires: {expires}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


_doc = st.one_of(
    st.none(),
    st.builds(
        StateDocument,
        st.sampled_from([b"", b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>"]),
        st.sampled_from([None, "application/pidf+xml", "application/xpidf+xml"]),
    ),
)
_input = st.one_of(
    st.tuples(st.just("update"), st.floats(0, 4000), _doc.filter(lambda d: d is not None)),
    st.tuples(st.just("authorize"), st.floats(0, 4000), _doc),
    st.tuples(
        st.just("reject"),
        st.floats(0, 4000),
        st.tuples(
            st.sampled_from(["rejected", "noresource", "deactivated", "giveup"]),
            st.one_of(st.none(), st.integers(0, 3600)),
            _doc,
        ),
    ),
    st.tuples(st.just("expire"), st.floats(0, 8000), _doc),
)


def _feed(sub: Notifier, item: tuple[str, float, object]) -> list[object]:
    kind, now, arg = item
    if kind == "update":
        return list(sub.update(now, arg))  # type: ignore[arg-type]
    if kind == "authorize":
        return list(sub.authorize(now, arg))  # type: ignore[arg-type]
    if kind == "reject":
        reason, retry, doc = cast(tuple[str, int | None, StateDocument | None], arg)
        return list(sub.reject(now, reason, retry_after=retry, document=doc))
    return list(sub.handle_timer(now, final_document=arg))  # type: ignore[arg-type]


def _wire(actions: list[object]) -> list[object]:
    out: list[object] = []
    for a in actions:
        if isinstance(a, SendNotify):
            r = a.request
            out.append(serialize(r.with_headers(r.headers.prepend("Via", "SIP/2.0/UDP h"))))
        out.append(a)
    return out


@settings(max_examples=200, deadline=None)
@given(_subscribe(), st.booleans(), _doc, st.lists(_input, max_size=5))
def test_notifier_notifies_equal_reference(
    raw: bytes, authorized: bool, document: StateDocument | None, inputs: list[object]
) -> None:
    request = parse_message(raw)
    assert isinstance(request, SipRequest)
    decision = check_subscribe(request)
    assert not isinstance(decision, SipResponse)
    contact = parse_name_addr("<sip:juliet@127.0.0.1:5060;transport=udp>")
    sub, first = Notifier.accept(
        request,
        decision,
        local_tag="gw1",
        contact=contact,
        now=0.0,
        authorized=authorized,
        document=document,
    )
    twin = Notifier.from_record(sub.to_record())
    twin.dialog = _RefDialog.from_record(sub.dialog.to_record())
    assert twin.dialog == sub.dialog
    for item in inputs:
        got = _wire(_feed(sub, item))  # type: ignore[arg-type]
        want = _wire(_feed(twin, item))  # type: ignore[arg-type]
        assert got == want
        assert sub.to_record() == twin.to_record()
    assert first  # the 200 (and a NOTIFY) came out of accept
