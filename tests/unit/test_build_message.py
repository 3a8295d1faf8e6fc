"""`sip_message.build_message` fast path (issue 11 round 4: remembered Request-URIs, headers
built without re-checking constant names) against the previous body, over random
`OutboundMessage`s: same request (method, URI, header pairs and keys, body, bytes) or the
same error (type, text, status), on a first and on a repeated call.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.pager import sip_message as sm
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import Headers, SipRequest
from gateway.sip.serializer import serialize
from gateway.sip.uri import parse_uri
from mappings.errors import MappingError


def old_build_message(out: sm.OutboundMessage) -> SipRequest:
    try:
        uri = parse_uri(out.request_uri)
    except RemoteProtocolError as exc:
        raise MappingError(
            f"bad target {out.request_uri!r}: {exc}", sip_status=400, xmpp_condition="bad-request"
        ) from None
    items: list[tuple[str, str]] = [
        ("Max-Forwards", str(out.max_forwards)),
        ("From", f"<{out.from_uri}>;tag={out.from_tag}"),
        ("To", f"<{out.to_uri}>"),
        ("Call-ID", out.call_id),
        ("CSeq", f"{out.cseq} MESSAGE"),
    ]
    if out.call_info:
        items.append(("Call-Info", out.call_info))
    if out.subject:
        items.append(("Subject", out.subject))
    if out.lang:
        items.append(("Content-Language", out.lang))
    items.append(("Content-Type", out.content[0]))
    return SipRequest("MESSAGE", uri, Headers(items), out.content[1])


_uris = st.sampled_from(
    [
        "sip:u1@sip.example",
        "sip:u1@127.0.0.1:5070;transport=tcp",
        "sips:bob@example.com",
        "sip:%C3%A9t%C3%A9@example.com;gr=abc",
        "tel:+15551234",
        "sip:",
        "not a uri",
        "sip:u1@[::1]:5060",
    ]
)
_values = st.one_of(
    st.sampled_from(["abc@host", " padded\t", "x\r\ny", "line\nfeed", "ç", "", "\t"]),
    st.text(max_size=8),
)


def _outcome(out: sm.OutboundMessage, build: object) -> object:
    try:
        req = build(out)  # type: ignore[operator]
    except Exception as exc:  # the outcome is compared
        return (type(exc), str(exc), getattr(exc, "sip_status", None))
    assert isinstance(req, SipRequest)
    h = req.headers
    return (req.method, req.uri, h._items, h._keys, req.body, serialize(req), repr(req))


@given(
    request_uri=_uris,
    from_uri=st.sampled_from(["sip:a@localhost;gr=r1", "sip:%20x@localhost", "sip:b@x"]),
    to_uri=_uris,
    call_id=_values,
    cseq=st.integers(0, 2**31 - 1),
    from_tag=st.sampled_from(["abc123", "t"]),
    ctype=st.sampled_from(["text/plain;charset=UTF-8", "message/cpim", " text/html "]),
    body=st.binary(max_size=16),
    subject=st.one_of(st.none(), _values),
    lang=st.one_of(st.none(), st.sampled_from(["en", "", "fr-CA", " de "])),
    hops=st.integers(0, 70),
    call_info=st.one_of(st.none(), st.just("<xmpp:a@localhost>;purpose=impp"), _values),
)
@settings(max_examples=200, deadline=None)
def test_build_message_matches_the_old_path(
    request_uri: str,
    from_uri: str,
    to_uri: str,
    call_id: str,
    cseq: int,
    from_tag: str,
    ctype: str,
    body: bytes,
    subject: str | None,
    lang: str | None,
    hops: int,
    call_info: str | None,
) -> None:
    out = sm.OutboundMessage(
        request_uri=request_uri,
        from_uri=from_uri,
        to_uri=to_uri,
        call_id=call_id,
        cseq=cseq,
        from_tag=from_tag,
        content=(ctype, body),
        subject=subject,
        lang=lang,
        max_forwards=hops,
        call_info=call_info,
    )
    expected = _outcome(out, old_build_message)
    assert _outcome(out, sm.build_message) == expected
    assert _outcome(out, sm.build_message) == expected  # the URI remembered
