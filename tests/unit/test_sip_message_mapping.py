"""gateway.bridge.pager.sip_message: RFC 7572 Tables 1 and 2, content types, CPIM, charsets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.pager import sip_message as sm
from gateway.sip.message import Headers, SipRequest
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.uri import parse_uri
from mappings import cpim, files, imdn
from mappings.errors import MappingError
from mappings.model import Address, BodyPart, ChatState, MessageOp, Subject

ROMEO = Address("romeo", "sip.example.org", "dr4hcr0st3lup4c")
JULIET = Address("juliet", "example.com")


def message(
    body: bytes,
    content_type: str | None = "text/plain",
    *,
    uri: str = "sip:juliet@example.com",
    sender: str = "<sip:romeo@sip.example.org;gr=dr4hcr0st3lup4c>;tag=vwxyz",
    extra: tuple[tuple[str, str], ...] = (),
) -> SipRequest:
    headers = [
        ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc"),
        ("Max-Forwards", "70"),
        ("From", sender),
        ("To", "<sip:juliet@example.com>"),
        ("Call-ID", "9E97FB43-85F4-4A00-8751-1124FD4C7B2E"),
        ("CSeq", "1 MESSAGE"),
        *extra,
    ]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return SipRequest("MESSAGE", parse_uri(uri), Headers(headers), body)


def inbound(req: SipRequest, trans_id: str = "s1") -> sm.InboundMessage:
    return sm.from_sip(
        req,
        trans_id=trans_id,
        source=sm.sender_address(req),
        destination=sm.recipient_address(req),
    )


# --- Table 2: SIP -> XMPP -----------------------------------------------------------------


def test_table2_every_row() -> None:
    req = message(
        "Neither, fair saint — ř".encode(),
        "text/plain; charset=UTF-8",
        extra=(("Subject", "Balcony"), ("Content-Language", "cs")),
    )
    op = inbound(req, "t-1").op
    assert op is not None
    assert op.source == ROMEO  # From + GRUU -> full JID resource
    assert op.destination == JULIET  # Request-URI -> to
    assert op.thread == "9E97FB43-85F4-4A00-8751-1124FD4C7B2E"  # Call-ID -> thread
    assert op.subjects == (Subject("Balcony"),)
    assert op.lang == "cs"  # Content-Language -> xml:lang
    assert op.trans_id == "t-1"  # transaction -> id
    assert op.text() == "Neither, fair saint — ř"
    assert op.max_forwards == 69  # one hop further (RFC 3860 §3.4.2)
    assert op.xmpp_type is None  # R7572-06: no type in pager mode


def test_gr_as_header_parameter_is_accepted() -> None:
    req = message(b"hi", sender="<sip:romeo@sip.example.org>;gr=dev1;tag=x")
    assert sm.sender_address(req).instance == "dev1"


def test_registrar_resource_overrides() -> None:
    req = message(b"hi")
    assert sm.sender_address(req, "phone").instance == "phone"


def test_sips_is_never_gatewayed() -> None:
    with pytest.raises(MappingError) as err:
        sm.recipient_address(message(b"x", uri="sips:juliet@example.com"))
    assert err.value.sip_status == 403


@pytest.mark.parametrize(
    ("charset", "text"),
    [("iso-8859-1", "café"), ("windows-1250", "Příliš žluťoučký"), ("us-ascii", "plain")],
)
def test_charsets_are_converted(charset: str, text: str) -> None:
    op = inbound(message(text.encode(charset), f"text/plain;charset={charset}")).op
    assert op is not None and op.text() == text
    assert op.parts[0].content == text.encode("utf-8")


@pytest.mark.parametrize("charset", ["x-klingon", "base64", "unicode_escape", "rot13"])
def test_unknown_or_bogus_charset_is_415(charset: str) -> None:
    with pytest.raises(sm.UnsupportedContent) as err:
        inbound(message(b"abc", f"text/plain;charset={charset}"))
    assert err.value.sip_status == 415
    assert ("Accept", ", ".join(sm.ACCEPTED_TYPES)) in err.value.headers


def test_undecodable_bytes_and_xml_illegal_characters_are_400() -> None:
    for body in (b"\xff\xfe broken", b"bell \x07 here"):
        with pytest.raises(MappingError) as err:
            inbound(message(body, "text/plain;charset=utf-8"))
        assert err.value.sip_status == 400


def test_unsupported_type_is_415_with_accept() -> None:
    with pytest.raises(sm.UnsupportedContent) as err:
        inbound(message(b"\x00\x01", "application/octet-stream"))
    assert err.value.sip_status == 415 and err.value.xmpp_condition == "not-acceptable"


def test_empty_body_is_400() -> None:
    with pytest.raises(MappingError) as err:
        inbound(message(b""))
    assert err.value.sip_status == 400


def test_max_forwards_zero_is_too_many_hops() -> None:
    req = message(b"x")
    req = req.with_headers(req.headers.set("Max-Forwards", "0"))
    with pytest.raises(MappingError) as err:
        inbound(req)
    assert err.value.sip_status == 483


def test_html_becomes_sanitised_xhtml_im_and_plain_text() -> None:
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<p>Hello <b>world</b><script>alert(1)</script></p>"
        "<p><a href='javascript:evil()'>x</a> <a href='https://example.com/'>ok</a>"
        "<img src='http://tracker/' alt='[pic]'></p></body></html>"
    )
    op = inbound(message(html.encode(), "text/html; charset=utf-8")).op
    assert op is not None
    assert op.text() == "Hello world\nx ok[pic]"
    (xhtml,) = [p for p in op.parts if p.media_type == sm.XHTML_PART]
    text = xhtml.content.decode()
    assert text.startswith('<body xmlns="http://www.w3.org/1999/xhtml">')
    assert "<strong>world</strong>" in text and 'href="https://example.com/"' in text
    for banned in ("script", "alert", "javascript", "style", "img", "tracker", "title"):
        assert banned not in text


def test_xhtml_im_to_html_round_trip() -> None:
    xhtml, _ = sm.html_to_xhtml_im("<p>one <em>two</em><br>three</p>")
    html = sm.xhtml_im_to_html(xhtml)
    assert html == b"<html><body><p>one <em>two</em><br>three</p></body></html>"


def _cpim(sender: str, to: str, inner: str, body: bytes, extra: str = "") -> bytes:
    head = f"From: <{sender}>\r\nTo: <{to}>\r\nDateTime: 2024-01-02T03:04:05Z\r\n{extra}\r\n"
    return head.encode() + f"Content-Type: {inner}\r\n\r\n".encode() + body


def test_cpim_unwrapped_with_identity_check() -> None:
    body = _cpim(
        "im:romeo@sip.example.org",
        "sip:juliet@example.com",
        "text/plain; charset=utf-8",
        b"wrapped",
        "Subject:;lang=en Hi\r\n",
    )
    op = inbound(message(body, "message/cpim")).op
    assert op is not None and op.text() == "wrapped"
    assert op.subjects == (Subject("Hi", "en"),)


@pytest.mark.parametrize(
    ("sender", "to"),
    [
        ("im:tybalt@sip.example.org", "sip:juliet@example.com"),
        ("im:romeo@sip.example.org", "sip:nurse@example.com"),
        ("im:romeo@evil.example", "sip:juliet@example.com"),
    ],
)
def test_cpim_identity_mismatch_is_403(sender: str, to: str) -> None:
    with pytest.raises(MappingError) as err:
        inbound(message(_cpim(sender, to, "text/plain", b"x"), "message/cpim"))
    assert err.value.sip_status == 403 and err.value.xmpp_condition == "forbidden"


def test_cpim_with_imdn_request_asks_for_a_receipt() -> None:
    extra = (
        "NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\n"
        "imdn.Disposition-Notification: positive-delivery\r\n"
    )
    body = _cpim("sip:romeo@sip.example.org", "sip:juliet@example.com", "text/plain", b"x", extra)
    got = inbound(message(body, "message/cpim"))
    assert got.op is not None and got.op.receipt_request
    assert got.disposition is not None and got.disposition.message_id == "34jk324j"


def test_imdn_notification_is_returned_for_correlation() -> None:
    request = imdn.DispositionRequest(
        "M1", datetime(2024, 1, 2, tzinfo=UTC), frozenset({"positive-delivery"})
    )
    ct, body = sm.delivery_notification_body(
        request,
        sender_uri="sip:romeo@sip.example.org",
        recipient_uri="sip:juliet@example.com",
        message_id="N1",
    )
    got = inbound(message(body, ct))
    assert got.op is None
    assert got.notification is not None
    assert (got.notification.message_id, got.notification.status) == ("M1", "delivered")


def test_iscomposing_becomes_a_chat_state() -> None:
    doc = (
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
        b"<state>active</state><refresh>60</refresh></isComposing>"
    )
    got = inbound(message(doc, "application/im-iscomposing+xml"))
    assert got.op is not None and got.op.chat_state is ChatState.COMPOSING
    assert got.refresh == 60 and not got.op.parts


# --- Table 1: XMPP -> SIP -----------------------------------------------------------------


def op(**kw: object) -> MessageOp:
    base: dict[str, object] = {
        "source": Address("juliet", "example.com", "yn0cl4bnw0yr3vym"),
        "destination": Address("romeo", "example.net"),
        "trans_id": "x1",
        "parts": (BodyPart.plain("Art thou not Romeo, and a Montague?"),),
    }
    base.update(kw)
    return MessageOp(**base)  # type: ignore[arg-type]


def build(o: MessageOp, *, html_ok: bool = False, call_id: str = "fresh@gw") -> SipRequest:
    content = sm.content_body(o, html_ok=html_ok)
    assert content is not None
    return sm.build_message(
        sm.OutboundMessage(
            request_uri="sip:romeo@example.net",
            from_uri="sip:juliet@example.com;gr=yn0cl4bnw0yr3vym",
            to_uri="sip:romeo@example.net",
            call_id=sm.call_id_for(o.thread, lambda: call_id),
            cseq=1,
            from_tag="12345",
            content=content,
            subject=sm.pick_subject(o),
            lang=o.lang,
        )
    )


def test_table1_every_row_rfc7572_example() -> None:
    req = build(
        op(thread="D9AA95FD-2BD5-46E2-AF0F-6CFAA96BDDFA", lang="en", subjects=(Subject("Q"),))
    )
    assert str(req.uri) == "sip:romeo@example.net"
    assert req.headers.get("From") == "<sip:juliet@example.com;gr=yn0cl4bnw0yr3vym>;tag=12345"
    assert req.headers.get("To") == "<sip:romeo@example.net>"
    assert req.call_id == "D9AA95FD-2BD5-46E2-AF0F-6CFAA96BDDFA"
    assert req.headers.get("Subject") == "Q"
    assert req.headers.get("Content-Language") == "en"
    assert req.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert "Contact" not in req.headers  # RFC 3428 §4
    assert req.body == b"Art thou not Romeo, and a Montague?"
    # it serialises and parses back
    again = parse_message(
        serialize(req.with_headers(req.headers.prepend("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")))
    )
    assert isinstance(again, SipRequest) and again.body == req.body


@pytest.mark.parametrize("thread", [None, "has space", "x" * 300, "ünïcode"])
def test_fresh_call_id_when_thread_absent_or_not_a_call_id(thread: str | None) -> None:
    assert build(op(thread=thread), call_id="fresh@gw").call_id == "fresh@gw"


def test_subject_in_message_language_preferred() -> None:
    o = op(lang="de", subjects=(Subject("Hello", "en"), Subject("Hallo", "de")))
    assert sm.pick_subject(o) == "Hallo"
    assert sm.pick_subject(op(subjects=(Subject("a\r\nb"),))) == "a b"


def test_xhtml_only_to_peers_that_accept_html() -> None:
    xhtml, plain = sm.html_to_xhtml_im("<p>bold <strong>move</strong></p>")
    o = op(parts=(BodyPart.plain(plain), BodyPart(sm.XHTML_PART, xhtml)))
    assert sm.content_body(o, html_ok=False) == ("text/plain;charset=UTF-8", b"bold move")
    ct, body = sm.content_body(o, html_ok=True) or ("", b"")
    assert ct == "text/html;charset=UTF-8" and b"<strong>move</strong>" in body


def test_chat_states_to_iscomposing_table4() -> None:
    ct, body = sm.composing_body(ChatState.COMPOSING) or ("", b"")
    assert ct == "application/im-iscomposing+xml" and b"<state>active</state>" in body
    _, idle = sm.composing_body(ChatState.PAUSED) or ("", b"")
    assert b"<state>idle</state>" in idle
    assert sm.composing_body(ChatState.GONE) is None


def test_receipt_request_wraps_in_cpim_with_imdn_headers() -> None:
    ct, body = sm.with_receipt_request(
        ("text/plain;charset=UTF-8", b"hi"),
        sender_uri="sip:juliet@example.com",
        recipient_uri="sip:romeo@example.net",
        message_id="Mid12345678",
        now=datetime(2024, 1, 2, tzinfo=UTC),
    )
    assert ct == "message/cpim"
    msg = cpim.parse_cpim(body)
    request = imdn.read_disposition_request(msg)
    assert request is not None and request.message_id == "Mid12345678"
    assert request.wants("delivered") and msg.body == b"hi"


@settings(max_examples=200)
@given(st.text(min_size=1).filter(lambda t: sm._XML_ILLEGAL.search(t) is None and t.strip()))
def test_plain_text_round_trips_through_sip(text: str) -> None:
    """Any XML-legal text survives XMPP -> SIP MESSAGE -> (parse) -> SIP -> XMPP."""
    req = build(op(parts=(BodyPart.plain(text),)))
    wire = serialize(req.with_headers(req.headers.prepend("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")))
    back = parse_message(wire)
    assert isinstance(back, SipRequest)
    got = sm.from_sip(
        back,
        trans_id="r",
        source=Address("juliet", "example.com"),
        destination=Address("romeo", "example.net"),
    ).op
    assert got is not None and got.text() == text


# --- file links (issue 17, mappings.files) -------------------------------------------------

FT_HTTP = (
    b'<file xmlns="urn:gsma:params:xml:ns:rcs:rcs:fthttp"><file-info type="file">'
    b"<file-size>9</file-size><file-name>a.pdf</file-name>"
    b"<content-type>application/pdf</content-type>"
    b'<data url="https://files.example.org/a.pdf" until="2026-12-14T10:00:00Z"/>'
    b"</file-info></file>"
)


def test_ft_http_from_sip_is_the_url_as_body_plus_the_link() -> None:
    op = inbound(message(FT_HTTP, "application/vnd.gsma.rcs-ft-http+xml")).op
    assert op is not None
    assert op.text() == "https://files.example.org/a.pdf"  # any client shows it
    (_, link_part) = op.parts
    assert link_part.media_type == files.FT_HTTP_TYPE
    link = files.parse_ft_http(link_part.content)
    assert (link.url, link.name, link.size) == ("https://files.example.org/a.pdf", "a.pdf", 9)


def test_ft_http_inside_cpim_is_unwrapped() -> None:
    msg = cpim.new_cpim(
        from_=cpim.Address("sip:romeo@sip.example.org"),
        to=[cpim.Address("sip:juliet@example.com")],
        content_type=files.FT_HTTP_TYPE,
        body=FT_HTTP,
    )
    op = inbound(message(cpim.build_cpim(msg), "message/cpim")).op
    assert op is not None and op.text() == "https://files.example.org/a.pdf"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (FT_HTTP.replace(b"https://files.example.org/a.pdf", b"javascript:alert(1)"), 415),
        (FT_HTTP.replace(b"https://files.example.org/a.pdf", b"file:///etc/passwd"), 415),
        (FT_HTTP[:-3], 400),
        (b"<file/>", 400),
        (FT_HTTP.replace(b"</file-info>", b"<x>" + b"y" * 20000 + b"</x></file-info>"), 413),
    ],
)
def test_hostile_ft_http_from_sip_is_refused(body: bytes, status: int) -> None:
    with pytest.raises(MappingError) as info:
        inbound(message(body, "application/vnd.gsma.rcs-ft-http+xml"))
    assert info.value.sip_status == status


def test_ft_http_is_in_accept() -> None:
    assert files.FT_HTTP_TYPE in sm.ACCEPT_HEADER[1]


def test_file_link_goes_as_ft_http_only_to_a_peer_that_takes_it() -> None:
    link = files.FileLink("https://up.example/x.png", name="x.png", content_type="image/png")
    op = MessageOp(
        source=JULIET,
        destination=ROMEO,
        trans_id="x",
        parts=(
            BodyPart.plain("https://up.example/x.png"),
            BodyPart(files.FT_HTTP_TYPE, files.build_ft_http(link)),
        ),
    )
    ctype, body = sm.content_body(op, html_ok=True, ft_ok=True) or ("", b"")
    assert ctype == files.FT_HTTP_TYPE and files.parse_ft_http(body) == link
    assert sm.content_body(op, html_ok=True) == (
        "text/plain;charset=UTF-8",
        b"https://up.example/x.png",
    )
