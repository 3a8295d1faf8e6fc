"""`sip_message.from_sip` against the specification: the operation it builds is already one
hop further (issue 11 round 4), so its Max-Forwards handling is tested here with expected
values (RFC 3261 §8.1.1.6, §16.6 step 3; RFC 3860 §3.4.2; RFC 7572 Table 1):

* Max-Forwards absent -> the default 70, minus this hop: 69;
* Max-Forwards 0 -> `TooManyHops` (SIP 483), but only for a message that would be relayed
  (a malformed one is refused for what is wrong with it first);
* Max-Forwards n > 0 -> n - 1 in the operation.

Together with the rest of Table 1 on random MESSAGEs: Call-ID -> thread, Subject ->
subject (trimmed; the CPIM Subject wins, RFC 3862 §3.3), the first Content-Language tag ->
xml:lang (an invalid tag is 400), the body decoded from its charset (unknown charset 415,
undecodable bytes or control characters 400), text/html -> plain + XHTML-IM, isComposing ->
a chat state (RFC 7573), an IMDN request in CPIM -> a receipt request (RFC 5438), anything
else 415.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.pager import sip_message as sm
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from mappings.model import Address, BodyPart, ChatState, Subject, TooManyHops

SOURCE = Address("romeo", "sip.example")
DESTINATION = Address("juliet", "xmpp.example")

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
_XHTML = b'<body xmlns="http://www.w3.org/1999/xhtml"><p>hi <strong>there</strong></p></body>'
PLAIN = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Expected:
    """What a body maps to: an error (exception type, SIP status), or its content."""

    error: tuple[type[Exception], int] | None = None
    texts: tuple[tuple[str, bytes], ...] = ()  # (content type, content) of each part
    chat_state: ChatState | None = None
    refresh: int | None = None
    cpim_subject: Subject | None = None  # RFC 3862: the wrapped message's Subject
    receipt: bool = False  # RFC 5438 positive-delivery request


_BAD = (sm.MappingError, 400)
_UNSUPPORTED = (sm.UnsupportedContent, 415)

# (Content-Type, body) -> what RFC 7572 Table 1 / RFC 3428 make of it
CONTENTS: list[tuple[str | None, bytes, Expected]] = [
    (None, b"plain hello", Expected(texts=((PLAIN, b"plain hello"),))),  # §21.4.13 default
    ("text/plain", b"hello", Expected(texts=((PLAIN, b"hello"),))),
    (
        "text/plain;charset=utf-8",
        "h\u00e9llo".encode(),
        Expected(texts=((PLAIN, "h\u00e9llo".encode()),)),
    ),
    (
        "text/plain;charset=iso-8859-1",
        b"h\xe9llo",
        Expected(texts=((PLAIN, "h\u00e9llo".encode()),)),
    ),
    ("text/plain;charset=utf-8", b"bad \xff utf8", Expected(error=_BAD)),
    ("text/plain;charset=x-no-such-charset", b"hello", Expected(error=_UNSUPPORTED)),
    ("text/plain;charset=base64", b"aGVsbG8=", Expected(error=_UNSUPPORTED)),  # not a charset
    ("text/plain", b"", Expected(error=_BAD)),  # RFC 3428 §4: a MESSAGE carries a body
    ("text/plain", b"\x01control", Expected(error=_BAD)),  # RFC 6120 §11.1
    (
        "text/html",
        b"<p>hi <b>there</b></p>",
        Expected(texts=((PLAIN, b"hi there"), ("application/xhtml+xml", _XHTML))),
    ),
    (
        "message/cpim",
        _CPIM,
        Expected(
            texts=((PLAIN, b"hello from cpim"),),
            cpim_subject=Subject("Bonjour", "fr"),
            receipt=True,
        ),
    ),
    ("message/cpim", b"garbage", Expected(error=_BAD)),
    (
        "application/im-iscomposing+xml",
        _ISCOMPOSING,
        Expected(chat_state=ChatState.COMPOSING, refresh=60),  # RFC 7573 Table 3
    ),
    ("application/octet-stream", b"\x00\x01", Expected(error=_UNSUPPORTED)),
]

# Content-Language -> the xml:lang expected (None: absent), or "bad" for a 400
LANGS: dict[str | None, str | None] = {
    None: None,
    "en": "en",
    "fr, de": "fr",  # the first tag (RFC 3261 §20.13 allows a list)
    "not a tag!": "bad",
    "x-" + "a" * 9: "bad",  # a subtag is at most 8 characters (RFC 5646 §2.1)
}
SUBJECTS: dict[str | None, str | None] = {
    None: None,
    "Hi": "Hi",
    "  spaced  ": "spaced",
    "\u00e9t\u00e9": "\u00e9t\u00e9",
}


def _request(
    ctype: str | None,
    body: bytes,
    *,
    hops: str | None,
    subject: str | None,
    lang: str | None,
    call_id: str,
) -> SipRequest:
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
    req = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(req, SipRequest)
    return req


def _outcome(req: SipRequest, trans_id: str) -> object:
    try:
        return sm.from_sip(req, trans_id=trans_id, source=SOURCE, destination=DESTINATION)
    except Exception as exc:  # the outcome is compared
        return exc


def _refused(got: object, error: tuple[type[Exception], int]) -> bool:
    """`got` is an exception of that type (or a subtype) carrying that SIP status."""
    kind, status = error
    return isinstance(got, kind) and getattr(got, "sip_status", None) == status


@given(
    content=st.sampled_from(CONTENTS),
    hops=st.sampled_from([None, "0", "1", "2", "70", "255"]),
    subject=st.sampled_from(sorted(SUBJECTS, key=str)),
    lang=st.sampled_from(sorted(LANGS, key=str)),
    call_id=st.sampled_from(["abc@host", "1", "weird\u00e9@x"]),
    trans_id=st.sampled_from(["p-1", "p-2"]),
)
@settings(max_examples=300, deadline=None)
def test_from_sip_follows_rfc_7572_table_1(
    content: tuple[str | None, bytes, Expected],
    hops: str | None,
    subject: str | None,
    lang: str | None,
    call_id: str,
    trans_id: str,
) -> None:
    ctype, body, want = content
    try:
        req = _request(ctype, body, hops=hops, subject=subject, lang=lang, call_id=call_id)
    except RemoteProtocolError:  # e.g. a non-ASCII Call-ID the parser refuses
        return
    got = _outcome(req, trans_id)
    xml_lang = LANGS[lang]
    # the order of the checks: the body (RFC 3428 §4, RFC 7572 R7572-12), then the
    # language tag, then the hop count (nothing malformed is answered with 483)
    if want.error is not None:
        assert _refused(got, want.error), got
        return
    if xml_lang == "bad":
        assert _refused(got, _BAD), got
        return
    if hops == "0":  # RFC 3261 §16.6 step 3 / RFC 3860 §3.4.2
        assert _refused(got, (TooManyHops, 483)), got
        return
    assert isinstance(got, sm.InboundMessage), got
    op = got.op
    assert op is not None and got.notification is None
    assert op.max_forwards == (70 if hops is None else int(hops)) - 1
    assert (op.source, op.destination, op.trans_id) == (SOURCE, DESTINATION, trans_id)
    assert op.thread == call_id  # Table 1: Call-ID -> thread
    assert op.lang == xml_lang
    assert op.parts == tuple(BodyPart(t, c, xml_lang) for t, c in want.texts)
    assert op.chat_state == want.chat_state and got.refresh == want.refresh
    assert op.receipt_request is want.receipt
    assert (got.disposition is not None) is want.receipt
    if not op.parts:  # a chat state carries no subject
        assert op.subjects == ()
    elif want.cpim_subject is not None:
        assert op.subjects == (want.cpim_subject,)
    else:
        header = SUBJECTS[subject]
        assert op.subjects == (() if header is None else (Subject(header, None),))


@pytest.mark.parametrize(
    ("hops", "expected"),
    [(None, 69), ("1", 0), ("2", 1), ("70", 69), ("255", 254)],
)
def test_max_forwards_is_one_less(hops: str | None, expected: int) -> None:
    req = _request(None, b"hi", hops=hops, subject=None, lang=None, call_id="c@h")
    inbound = sm.from_sip(req, trans_id="t", source=SOURCE, destination=DESTINATION)
    assert inbound.op is not None and inbound.op.max_forwards == expected


def test_max_forwards_zero_is_483() -> None:
    req = _request(None, b"hi", hops="0", subject=None, lang=None, call_id="c@h")
    with pytest.raises(TooManyHops) as info:
        sm.from_sip(req, trans_id="t", source=SOURCE, destination=DESTINATION)
    assert info.value.sip_status == 483
