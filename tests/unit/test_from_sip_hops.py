"""`sip_message.from_sip` builds the operation one hop further directly (issue 11 round 4)
instead of building it and then `op.forwarded()`; the oracle is the previous function body.

Random MESSAGEs (Max-Forwards absent/0/1/70, content types and charsets, Subject,
Content-Language valid or not, Call-IDs, bodies, CPIM wrappers) must give an equal
`InboundMessage` or the same error (type, text, SIP status).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.pager import sip_message as sm
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from mappings import imdn as imdn_fmt
from mappings.errors import MappingError
from mappings.model import Address, MessageOp, Subject, XmppMessageType

SOURCE = Address("romeo", "sip.example")
DESTINATION = Address("juliet", "xmpp.example")


def old_from_sip(
    req: SipRequest, *, trans_id: str, source: Address, destination: Address
) -> sm.InboundMessage:
    if not req.body:
        raise sm._bad("MESSAGE without a body")
    ct = req.content_type
    content_type = str(ct) if ct is not None else "text/plain"
    lang = sm._lang(req)
    subjects: list[Subject] = []
    disposition = None
    media = sm._media(content_type)
    body = req.body
    if media == "message/cpim":
        to_address = sm._to_address(req)
        recipients = [destination] if to_address is None else [destination, to_address]
        msg = sm._unwrap_cpim(body, source, recipients)
        if msg.media_type == "message/cpim":
            raise sm.UnsupportedContent("nested message/cpim")
        content_type, body = msg.content_type or "text/plain", msg.body
        disposition = imdn_fmt.read_disposition_request(msg)
        seen: set[str | None] = set()
        for text, slang in msg.subjects:
            if slang not in seen:
                seen.add(slang)
                subjects.append(Subject(text, slang))
        lang = msg.content_header("Content-Language") or lang
    subject = req.headers.get("Subject")
    if subject and not subjects:
        subjects.append(Subject(subject.strip(), None))
    try:
        content = sm._map_content(content_type, body, lang)
        if content.notification is not None:
            return sm.InboundMessage(None, content.notification)
        op = MessageOp(
            source=source,
            destination=destination,
            trans_id=trans_id,
            parts=content.parts,
            subjects=tuple(subjects) if content.parts else (),
            thread=req.call_id,
            lang=lang,
            max_forwards=sm._max_forwards(req),
            xmpp_type=XmppMessageType.CHAT if content.chat_state else None,
            receipt_request=disposition is not None and disposition.wants("delivered"),
            chat_state=content.chat_state,
        )
    except ValueError as exc:
        if isinstance(exc, MappingError):
            raise
        raise sm._bad(str(exc)) from None
    return sm.InboundMessage(op.forwarded(), None, disposition, content.refresh)


_CPIM = (
    b"From: <sip:romeo@sip.example>\r\nTo: <sip:juliet@xmpp.example>\r\n"
    b"Subject:;lang=fr Bonjour\r\nNS: imdn <urn:ietf:params:imdn>\r\n"
    b"imdn.Message-ID: abc123\r\nimdn.Disposition-Notification: positive-delivery\r\n\r\n"
    b"Content-Type: text/plain;charset=utf-8\r\n\r\nhello from cpim"
)
_ISCOMPOSING = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
    b"<state>active</state><refresh>60</refresh></isComposing>"
)

_contents = st.sampled_from(
    [
        (None, b"plain hello"),
        ("text/plain", b"hello"),
        ("text/plain;charset=utf-8", "h\u00e9llo".encode()),
        ("text/plain;charset=iso-8859-1", b"h\xe9llo"),
        ("text/plain;charset=utf-8", b"bad \xff utf8"),
        ("text/plain", b""),
        ("text/html", b"<p>hi <b>there</b></p>"),
        ("message/cpim", _CPIM),
        ("message/cpim", b"garbage"),
        ("application/im-iscomposing+xml", _ISCOMPOSING),
        ("application/octet-stream", b"\x00\x01"),
        ("text/plain", b"\x01control"),
    ]
)


@given(
    content=_contents,
    hops=st.sampled_from([None, "0", "1", "2", "70", "255"]),
    subject=st.sampled_from([None, "Hi", "  spaced  ", "\u00e9t\u00e9"]),
    lang=st.sampled_from([None, "en", "fr, de", "not a tag!", "x-" + "a" * 9]),
    call_id=st.sampled_from(["abc@host", "1", "weird\u00e9@x"]),
    trans_id=st.sampled_from(["p-1", "p-2"]),
)
@settings(max_examples=200, deadline=None)
def test_from_sip_matches_the_old_path(
    content: tuple[str | None, bytes],
    hops: str | None,
    subject: str | None,
    lang: str | None,
    call_id: str,
    trans_id: str,
) -> None:
    ctype, body = content
    lines = [
        "MESSAGE sip:juliet@xmpp.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx1",
        "From: <sip:romeo@sip.example>;tag=1",
        "To: <sip:juliet@xmpp.example>",
        f"Call-ID: {call_id}",
        "CSeq: 1 MESSAGE",
    ]
    if hops is not None:
        lines.append(f"Max-Forwards: {hops}")
    if ctype is not None:
        lines.append(f"Content-Type: {ctype}")
    if subject is not None:
        lines.append(f"Subject: {subject}")
    if lang is not None:
        lines.append(f"Content-Language: {lang}")
    lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    try:
        req = parse_message(raw)
    except RemoteProtocolError:
        return
    assert isinstance(req, SipRequest)
    kwargs = {"trans_id": trans_id, "source": SOURCE, "destination": DESTINATION}
    try:
        expected: object = old_from_sip(req, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # the outcome is compared
        expected = (type(exc), str(exc), getattr(exc, "sip_status", None))
    try:
        got: object = sm.from_sip(req, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # the outcome is compared
        got = (type(exc), str(exc), getattr(exc, "sip_status", None))
    assert got == expected
