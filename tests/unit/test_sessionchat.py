"""mappings.sessionchat: RFC 7573 MSRP message <-> XMPP chat content, and the error maps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import cpim as cpim_fmt
from mappings.errors import MappingError
from mappings.model import Address, ChatState
from mappings.sessionchat import (
    ChatContent,
    failure_code,
    takes_msrp,
    unwrap,
    wrap_state,
    wrap_text,
    xmpp_error,
)

ROMEO = Address("romeo", "example.net")
JULIET = Address("juliet", "example.com")
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
ISC_ACTIVE = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<isComposing xmlns="
    b"'urn:ietf:params:xml:ns:im-iscomposing'><state>active</state></isComposing>"
)
ISC_IDLE = ISC_ACTIVE.replace(b"active", b"idle")


def cpim(inner_type: str, body: bytes, sender: str = "sip:romeo@example.net",
         to: str = "sip:juliet@example.com") -> bytes:  # fmt: skip
    head = f"From: <{sender}>\r\nTo: <{to}>\r\n\r\nContent-Type: {inner_type}\r\n\r\n"
    return head.encode() + body


def go(content_type: str, body: bytes) -> ChatContent:
    return unwrap(content_type, body, sender=ROMEO, recipient=JULIET)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b"hello", ChatContent(text="hello")),
        ("text/plain;charset=UTF-8", "žluťoučký".encode(), ChatContent(text="žluťoučký")),
        ("Text/Plain; charset=iso-8859-1", "é".encode("latin-1"), ChatContent(text="é")),
        ("application/im-iscomposing+xml", ISC_ACTIVE, ChatContent(chat_state=ChatState.COMPOSING)),
        ("application/im-iscomposing+xml", ISC_IDLE, ChatContent(chat_state=ChatState.ACTIVE)),
        ("message/cpim", cpim("text/plain", b"wrapped"), ChatContent(text="wrapped")),
        ("message/cpim", cpim("application/im-iscomposing+xml", ISC_ACTIVE),
         ChatContent(chat_state=ChatState.COMPOSING)),
    ],
)  # fmt: skip
def test_unwrap_table(content_type: str, body: bytes, expected: ChatContent) -> None:
    assert go(content_type, body) == expected


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/octet-stream", b"\x00", 415),
        ("text/html", b"<p>x</p>", 415),
        ("text/plain;charset=x-unknown", b"x", 415),
        ("text/plain", b"\xff\xfe\xfa", 400),
        ("text/plain", b"bell \x07", 400),
        ("application/im-iscomposing+xml", b"<nope/>", 400),
        ("message/cpim", b"not cpim at all", 400),
        ("message/cpim", cpim("text/plain", b"x", sender="sip:tybalt@example.net"), 403),
        ("message/cpim", cpim("text/plain", b"x", to="sip:nurse@example.com"), 403),
        ("message/cpim", cpim("message/cpim", cpim("text/plain", b"x")), 415),
    ],
)
def test_unwrap_refusals(content_type: str, body: bytes, status: int) -> None:
    with pytest.raises(MappingError) as err:
        go(content_type, body)
    assert err.value.sip_status == status


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff"),
    min_size=1,
    max_size=200,
).filter(lambda t: not any(ord(c) < 32 and c not in "\t\n\r" for c in t))


@settings(max_examples=200, derandomize=True)
@given(text=_TEXT, wrapped=st.booleans())
def test_text_round_trip(text: str, wrapped: bool) -> None:
    """What the gateway writes into a session reads back as the same text."""
    content_type, body = wrap_text(
        text, cpim=wrapped, sender_uri="sip:romeo@example.net",
        recipient_uri="sip:juliet@example.com", now=NOW,
    )  # fmt: skip
    assert content_type.startswith("message/cpim" if wrapped else "text/plain")
    assert go(content_type, body) == ChatContent(text=text)


def test_wrapped_text_has_cpim_headers() -> None:
    content_type, body = wrap_text(
        "hi", cpim=True, sender_uri="sip:juliet@example.com",
        recipient_uri="sip:romeo@example.net", now=NOW,
    )  # fmt: skip
    msg = cpim_fmt.parse_cpim(body)
    assert content_type == "message/cpim"
    assert msg.from_ is not None and msg.from_.uri == "sip:juliet@example.com"
    assert [a.uri for a in msg.to] == ["sip:romeo@example.net"]
    assert msg.datetime is not None
    assert msg.content_type == "text/plain;charset=UTF-8" and msg.body == b"hi"


@pytest.mark.parametrize(
    ("state", "composing"),
    [
        (ChatState.COMPOSING, b"<state>active</state>"),
        (ChatState.ACTIVE, b"<state>idle</state>"),
        (ChatState.PAUSED, b"<state>idle</state>"),
        (ChatState.INACTIVE, b"<state>idle</state>"),
    ],
)
def test_chat_state_table4(state: ChatState, composing: bytes) -> None:
    for wrapped in (False, True):
        out = wrap_state(
            state, cpim=wrapped, sender_uri="sip:a@b", recipient_uri="sip:c@d", now=NOW
        )
        assert out is not None
        assert composing in out[1]
        assert out[0] == ("message/cpim" if wrapped else "application/im-iscomposing+xml")


def test_gone_has_no_iscomposing() -> None:
    """RFC 7573 §6.1: gone ends the session instead (the glue sends BYE)."""
    assert wrap_state(ChatState.GONE, cpim=False, sender_uri="sip:a@b",
                      recipient_uri="sip:c@d", now=NOW) is None  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "code"),
    [
        ("item-not-found", 403),
        ("service-unavailable", 403),
        ("recipient-unavailable", 403),
        ("forbidden", 403),
        ("not-authorized", 403),
        ("bad-request", 400),
        ("jid-malformed", 400),
        ("remote-server-timeout", 408),
        ("policy-violation", 403),
        ("no-such-condition", 403),
    ],
)
def test_failure_code(condition: str, code: int) -> None:
    assert failure_code(condition) == code


@given(st.sampled_from(
    ["bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
     "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable",
     "not-allowed", "not-authorized", "policy-violation", "recipient-unavailable", "redirect",
     "registration-required", "remote-server-not-found", "remote-server-timeout",
     "resource-constraint", "service-unavailable", "subscription-required",
     "undefined-condition", "unexpected-request"]
))  # fmt: skip
def test_failure_code_is_an_msrp_status(condition: str) -> None:
    """RFC 4975 §10: a failure REPORT carries one of MSRP's own codes."""
    assert failure_code(condition) in {400, 403, 408, 413, 415, 423, 481, 501, 506}


@pytest.mark.parametrize(
    ("code", "condition"),
    [
        (400, "bad-request"),
        (403, "forbidden"),
        (408, "remote-server-timeout"),
        (413, "policy-violation"),
        (481, "item-not-found"),
        (200, "internal-server-error"),  # never an error: treated as a server failure
    ],
)
def test_xmpp_error(code: int, condition: str) -> None:
    assert xmpp_error(code).condition == condition


SDP_MSRP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n"
)


@pytest.mark.parametrize(
    ("status", "allow", "content_type", "body", "expected"),
    [
        (200, "INVITE, ACK, BYE, MESSAGE", "application/sdp", SDP_MSRP, True),
        (200, None, "application/sdp", SDP_MSRP, True),
        (200, "invite,bye", "Application/SDP", SDP_MSRP.replace(b"TCP/MSRP", b"TCP/TLS/MSRP"),
         True),
        (200, "MESSAGE, OPTIONS", "application/sdp", SDP_MSRP, False),  # no INVITE
        (200, "INVITE", "application/sdp", SDP_MSRP.replace(b"m=message", b"m=audio"), False),
        (200, "INVITE", "application/sdp", SDP_MSRP.replace(b"TCP/MSRP", b"RTP/AVP"), False),
        (200, "INVITE", "text/plain", SDP_MSRP, False),
        (200, "INVITE", None, b"", False),  # Accept/Allow alone say nothing of MSRP
        (404, "INVITE", "application/sdp", SDP_MSRP, False),
    ],
)  # fmt: skip
def test_takes_msrp(
    status: int, allow: str | None, content_type: str | None, body: bytes, expected: bool
) -> None:
    assert takes_msrp(status, allow, content_type, body) is expected
