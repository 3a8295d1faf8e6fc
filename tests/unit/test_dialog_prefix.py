"""In-dialog requests (`Dialog.new_request`, built from a per-dialog cached prefix, issue
11) against RFC 3261 §12.2.1.1, with expected values over Hypothesis dialogs (route sets
loose and strict, tags, URIs with parameters, IPv6 targets, lazy remote URIs, target
refreshes between requests):

* the Request-URI is the remote target and the Route is the route set, unless the first
  route is a strict router (no `lr`): then the Request-URI is that route's URI (without the
  parameters §19.1.1 forbids there) and the remote target is appended as the last Route;
* Max-Forwards 70 (§8.1.1.6); From = local URI with the local tag; To = remote URI with the
  remote tag when there is one; Call-ID of the dialog; CSeq one more than the local CSeq
  (1 when empty), also when the request cannot be built; Contact on target refresh
  requests; the caller's headers kept, in order, after those;
* what RFC 3261 §7.3.1 / §25.1 forbid (CR/LF in a value, a name or method that is not a
  token) is refused with `LocalProtocolError`, every time;
* the bytes parse back (§7) to the same header fields and the same parsed views.

And the NOTIFYs of RFC 6665 notifiers (the UAS side of the dialog, §4.1.2.4): their dialog
fields follow the SUBSCRIBE, their CSeq counts up by one, and a notifier restored from its
record (prefix not built) sends exactly what the live one (prefix cached) sends."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip import abnf
from gateway.sip.dialog import Dialog, DialogId
from gateway.sip.errors import LocalProtocolError, RemoteProtocolError, SipError
from gateway.sip.headers import NameAddr, parse_name_addr
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.notifier import Notifier, check_subscribe
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.subscription import SendNotify, StateDocument
from gateway.sip.uri import parse_uri

pytestmark = pytest.mark.unit

# RFC 3261 §12.2 / RFC 6665 §4.1.2.4: requests that carry a Contact in a dialog
TARGET_REFRESH = {"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"}
COMPACT = {"i": "Call-ID"}  # §7.3.3, the compact forms generated below


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


def _text(value: object) -> str:
    return str(parse_uri(value)) if isinstance(value, str) else str(value)


def _expected_target(route_set: tuple[NameAddr, ...], remote_target: str) -> tuple[str, list[str]]:
    """Request-URI and Route values by RFC 3261 §12.2.1.1."""
    if not route_set:
        return remote_target, []
    first = route_set[0].uri
    if ";lr" in str(first):  # a loose router (§19.1.1 `lr`)
        return remote_target, [str(r) for r in route_set]
    # strict: its URI is the Request-URI (`method` is not allowed there, §19.1.1 table)
    uri = str(first).replace(";method=X", "")
    return uri, [*(str(r) for r in route_set[1:]), f"<{remote_target}>"]


class Expected:
    """The dialog state the test keeps by the RFC, beside the `Dialog` under test."""

    def __init__(self, parts: dict[str, object]) -> None:
        did = cast(DialogId, parts["id"])
        self.id = did
        self.local = cast(NameAddr, parts["local"])
        remote = parts["remote"]
        self.remote = f"<{remote}>" if isinstance(remote, str) else str(remote)
        self.target = _text(parts["remote_target"])
        self.routes = cast(tuple[NameAddr, ...], parts["route_set"])
        self.cseq = cast(int | None, parts["local_cseq"])
        self.contact = cast(NameAddr | None, parts["local_target"])

    def request(
        self, method: str, headers: list[tuple[str, str]]
    ) -> tuple[str, list[tuple[str, str]]] | str:
        """(Request-URI, header fields), or the `LocalProtocolError` text."""
        self.cseq = 1 if self.cseq is None else self.cseq + 1  # §12.2.1.1: one more
        uri, routes = _expected_target(self.routes, self.target)
        tag = self.id.remote_tag
        fields = [
            *(("Route", r) for r in routes),
            ("Max-Forwards", "70"),
            ("From", f"{self.local};tag={self.id.local_tag}"),
            ("To", f"{self.remote};tag={tag}" if tag else self.remote),
            ("Call-ID", self.id.call_id),
            ("CSeq", f"{self.cseq} {method}"),
        ]
        if method in TARGET_REFRESH and self.contact is not None:
            fields.append(("Contact", str(self.contact)))
        fields += headers
        out = []
        for name, value in fields:  # §7.3.1: no line folding in what we write
            if not abnf.is_token(name):
                return f"invalid header name {name!r}"
            if "\r" in value or "\n" in value:
                return f"CR/LF in value of {name}"
            out.append((COMPACT.get(name, name), value.strip(" \t")))
        if not abnf.is_token(method):  # §25.1 Method = token
            return f"invalid method {method!r}"
        return uri, out


_VIEWS = ("to", "routes", "to_tag", "from_", "call_id", "cseq")


def _views(request: SipRequest) -> list[object]:
    """The parsed views a sender reads (filled in by `new_request` from its prefix)."""
    out: list[object] = []
    for name in _VIEWS:
        try:
            out.append(getattr(request, name))
        except Exception as exc:
            out.append(type(exc))
    return out


def _check(
    dialog: Dialog, want: Expected, op: tuple[str, str, list[tuple[str, str]], bytes]
) -> None:
    kind, arg, headers, body = op
    if kind == "refresh":  # a target refresh (§12.2.1.2) between requests
        dialog.remote_target = parse_uri(arg)
        want.target = _text(arg)
        return
    expected = want.request(arg, headers)
    try:
        request = dialog.new_request(arg, headers=headers, body=body)
    except SipError as exc:
        assert (type(exc), str(exc)) == (LocalProtocolError, expected)
        assert dialog.local_cseq == want.cseq
        return
    assert not isinstance(expected, str), expected
    uri, fields = expected
    assert (request.method, str(request.uri), list(request.headers), request.body) == (
        arg,
        uri,
        fields,
        body,
    )
    assert dialog.local_cseq == want.cseq
    # the bytes parse back to the same fields and the same parsed views (RFC 3261 §7)
    wire = request.with_headers(request.headers.prepend("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"))
    try:
        parsed = parse_message(serialize(wire))
    except RemoteProtocolError as exc:  # the caller's headers repeat a single field
        assert str(exc).startswith("duplicate "), exc
        return
    assert isinstance(parsed, SipRequest)
    fields_back = [f for f in list(parsed.headers)[1:] if f[0] != "Content-Length"]
    assert (parsed.method, str(parsed.uri), fields_back) == (arg, uri, fields)
    assert _views(request) == _views(parsed)


@settings(max_examples=300, deadline=None)
@given(_dialog_parts(), st.lists(_op, min_size=1, max_size=6))
def test_new_request_follows_rfc_3261_12_2_1_1(parts: dict[str, object], ops: list[object]) -> None:
    dialog = Dialog(**parts)  # type: ignore[arg-type]
    want = Expected(parts)
    for op in ops:
        _check(dialog, want, op)  # type: ignore[arg-type]


def _parts(**changes: object) -> dict[str, object]:
    parts: dict[str, object] = {
        "id": DialogId("c1", "lt", "rt"),
        "local": parse_name_addr("<sip:juliet@localhost>"),
        "remote": "sip:w1@sip.localhost",
        "remote_target": "sip:w1@127.0.0.1:5062",
        "local_target": parse_name_addr("<sip:gw@127.0.0.1:5060>"),
    }
    parts.update(changes)
    return parts


def test_loose_route_keeps_the_target_as_request_uri() -> None:
    routes = (parse_name_addr("<sip:p1.example.com;lr>"), parse_name_addr("<sip:p2.example.com>"))
    request = Dialog(**_parts(route_set=routes)).new_request("NOTIFY")  # type: ignore[arg-type]
    assert str(request.uri) == "sip:w1@127.0.0.1:5062"
    assert request.headers.get_all("Route") == ("<sip:p1.example.com;lr>", "<sip:p2.example.com>")


def test_strict_route_puts_the_target_last() -> None:
    routes = (
        parse_name_addr("<sip:p1.example.com;method=NOTIFY>"),
        parse_name_addr("<sip:p2.example.com;lr>"),
    )
    request = Dialog(**_parts(route_set=routes)).new_request("NOTIFY")  # type: ignore[arg-type]
    assert str(request.uri) == "sip:p1.example.com"
    assert request.headers.get_all("Route") == (
        "<sip:p2.example.com;lr>",
        "<sip:w1@127.0.0.1:5062>",
    )


def test_fields_and_cseq() -> None:
    dialog = Dialog(**_parts(local_cseq=41))  # type: ignore[arg-type]
    first = dialog.new_request("NOTIFY", headers=[("Event", "presence")])
    second = dialog.new_request("MESSAGE", headers=[("X-Thing", " v\t")])
    assert list(first.headers) == [
        ("Max-Forwards", "70"),
        ("From", "<sip:juliet@localhost>;tag=lt"),
        ("To", "<sip:w1@sip.localhost>;tag=rt"),
        ("Call-ID", "c1"),
        ("CSeq", "42 NOTIFY"),
        ("Contact", "<sip:gw@127.0.0.1:5060>"),
        ("Event", "presence"),
    ]
    assert second.headers.get("CSeq") == "43 MESSAGE"
    assert "Contact" not in second.headers  # MESSAGE is no target refresh request
    assert second.headers.get("X-Thing") == "v"
    assert dialog.local_cseq == 43


def test_prefix_rebuilt_when_a_field_is_replaced() -> None:
    dialog = Dialog(**_parts())  # type: ignore[arg-type]
    assert dialog.new_request("NOTIFY").headers.get_all("Route") == ()
    # direct assignment (not through a method) is still honoured
    dialog.route_set = (parse_name_addr("<sip:proxy.example.com;lr>"),)
    assert dialog.new_request("NOTIFY").headers.get("Route") == "<sip:proxy.example.com;lr>"
    dialog.local = parse_name_addr('"J" <sip:juliet@localhost>')
    assert dialog.new_request("NOTIFY").headers.get("From") == '"J" <sip:juliet@localhost>;tag=lt'
    dialog.id = DialogId("c2", "lt2", "")
    got = dialog.new_request("NOTIFY")
    assert (got.call_id, got.from_tag, got.to_tag) == ("c2", "lt2", None)
    dialog.remote_target = parse_uri("sip:w1@192.0.2.9")
    assert str(dialog.new_request("NOTIFY").uri) == "sip:w1@192.0.2.9"


def test_bad_prefix_raises_every_time() -> None:
    dialog = Dialog(**_parts(id=DialogId("bad\r\nid", "lt", "rt")))  # type: ignore[arg-type]
    for cseq in (1, 2):
        with pytest.raises(LocalProtocolError) as info:
            dialog.new_request("NOTIFY")
        assert str(info.value) == "CR/LF in value of Call-ID"
        assert dialog.local_cseq == cseq


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


def _notifies(actions: list[object]) -> list[SipRequest]:
    return [a.request for a in actions if isinstance(a, SendNotify)]


def _check_notify(request: SipRequest, subscribe: SipRequest, cseq: int) -> None:
    """A NOTIFY in the dialog the SUBSCRIBE formed, we being its UAS (RFC 3261 §12.1.1,
    §12.2.1.1; RFC 6665 §4.1.2.4, §4.2.2)."""
    rr = [str(r) for r in subscribe.record_routes]  # the route set, in order
    contact = str(subscribe.contacts[0].uri)  # the remote target
    uri, routes = _expected_target(subscribe.record_routes, contact)
    assert str(request.uri) == uri and list(request.headers.get_all("Route")) == routes
    assert rr == [str(r) for r in subscribe.record_routes]
    sub_to, sub_from = subscribe.to, subscribe.from_
    assert sub_to is not None and sub_from is not None
    assert request.headers.get("Max-Forwards") == "70"
    assert request.headers.get("From") == f"{sub_to};tag=gw1"
    assert request.headers.get("To") == str(sub_from)
    assert request.call_id == subscribe.call_id
    assert request.headers.get("CSeq") == f"{cseq} NOTIFY"
    assert request.headers.get("Contact") == "<sip:juliet@127.0.0.1:5060;transport=udp>"
    assert request.headers.get("Event") == subscribe.headers.get("Event")


@settings(max_examples=200, deadline=None)
@given(_subscribe(), st.booleans(), _doc, st.lists(_input, max_size=5))
def test_notifier_notifies_in_the_subscribe_dialog(
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
    assert first  # the 200 (and a NOTIFY) came out of accept
    sent = _notifies(list(first))
    restored = Notifier.from_record(sub.to_record())  # its dialog has no prefix yet
    for item in inputs:
        live = _notifies(_feed(sub, item))  # type: ignore[arg-type]
        cold = _notifies(_feed(restored, item))  # type: ignore[arg-type]
        assert [serialize(r) for r in live] == [serialize(r) for r in cold]
        assert sub.to_record() == restored.to_record()
        sent += live
    for n, notify in enumerate(sent, start=1):  # CSeq counts up from 1 (§12.2.1.1)
        _check_notify(notify, request, n)
