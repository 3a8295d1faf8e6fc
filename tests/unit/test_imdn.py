"""mappings.imdn: RFC 5438 documents and CPIM headers, XEP-0184 mapping (DIGEST §16)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from mappings.cpim import Address, build_cpim, new_cpim, parse_cpim
from mappings.imdn import (
    FAILURE_CONDITIONS,
    DeliveryFailure,
    Displayed,
    DispositionRequest,
    Imdn,
    ImdnError,
    Receipt,
    build_imdn,
    delivery_notification,
    is_imdn,
    new_message_id,
    parse_imdn,
    parse_notification,
    read_disposition_request,
    request_delivery,
    xmpp_outcome,
)
from mappings.xmlsafe import XmlRejected

SCHEMA = Path(__file__).resolve().parents[1] / "vectors" / "standards" / "schemas" / "imdn.xsd"
MINUS5 = timezone(timedelta(hours=-5))

# RFC 5438 §7.1.1.3: an IM requesting positive and negative delivery notifications.
IM_7_1_1_3 = (
    b"From: Alice <im:alice@example.com>\r\n"
    b"To: Bob <im:bob@example.com>\r\n"
    b"NS: imdn <urn:ietf:params:imdn>\r\n"
    b"imdn.Message-ID: 34jk324j\r\n"
    b"DateTime: 2006-04-04T12:16:49-05:00\r\n"
    b"imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n"
    b"\r\n"
    b"Content-type: text/plain\r\n"
    b"Content-length: 12\r\n"
    b"\r\n"
    b"Hello World\n"
)

IMDN_XML_7_2_1_1 = b"""<?xml version="1.0" encoding="UTF-8"?>
   <imdn xmlns="urn:ietf:params:xml:ns:imdn">
         <message-id>34jk324j</message-id>
         <datetime>2008-04-04T12:16:49-05:00</datetime>
        <recipient-uri>im:bob@example.com</recipient-uri>

         <original-recipient-uri
           >im:bob@example.com</original-recipient-uri>
         <delivery-notification>
            <status>
               <delivered/>
            </status>
         </delivery-notification>
       </imdn>"""

# RFC 5438 §7.2.1.1: the CPIM body of that delivery notification.
IMDN_7_2_1_1 = (
    b"From: Bob <im:bob@example.com>\r\n"
    b"To: Alice <im:alice@example.com>\r\n"
    b"NS: imdn <urn:ietf:params:imdn>\r\n"
    b"imdn.Message-ID: d834jied93rf\r\n"
    b"\r\n"
    b"Content-type: message/imdn+xml\r\n"
    b"Content-Disposition: notification\r\n"
    b"\r\n" + IMDN_XML_7_2_1_1
)

DISPLAY_7_2_1_2 = IMDN_XML_7_2_1_1.replace(b"delivery-notification", b"display-notification")
DISPLAY_7_2_1_2 = DISPLAY_7_2_1_2.replace(b"<delivered/>", b"<displayed/>")


# --- RFC 5438 examples ---


def test_7_1_1_3_request_is_read() -> None:
    request = read_disposition_request(parse_cpim(IM_7_1_1_3))
    assert request == DispositionRequest(
        "34jk324j",
        datetime(2006, 4, 4, 12, 16, 49, tzinfo=MINUS5),
        frozenset({"positive-delivery", "negative-delivery"}),
    )
    assert request.wants("delivered")
    assert request.wants("failed")
    assert not request.wants("displayed")


def test_7_2_1_1_delivery_notification() -> None:
    msg = parse_cpim(IMDN_7_2_1_1)
    assert is_imdn(msg)
    assert read_disposition_request(msg) is None  # no IMDN for an IMDN
    assert parse_notification(msg) == Imdn(
        "34jk324j",
        datetime(2008, 4, 4, 12, 16, 49, tzinfo=MINUS5),
        "delivery",
        "delivered",
        "im:bob@example.com",
        "im:bob@example.com",
    )


def test_7_2_1_2_display_notification() -> None:
    imdn = parse_imdn(DISPLAY_7_2_1_2)
    assert (imdn.kind, imdn.status) == ("display", "displayed")
    assert xmpp_outcome(imdn, "x1") == Displayed("x1")  # XEP-0333 <displayed/> (issue 17)


# --- reading requests ---


def _im(*headers: str) -> bytes:
    lines = ["From: <im:a@example.com>", "To: <im:b@example.com>", *headers]
    return ("".join(h + "\r\n" for h in lines) + "\r\nContent-Type: text/plain\r\n\r\nhi").encode()


def test_any_prefix_is_accepted() -> None:
    """RFC 5438 §6.1: servers and intermediaries must accept any legal prefix."""
    msg = parse_cpim(
        _im(
            "NS: d <urn:ietf:params:imdn>",
            "d.Message-ID: abc",
            "d.Disposition-Notification: positive-delivery;x=1 , display",
        )
    )
    request = read_disposition_request(msg)
    assert request is not None
    assert request.requested == {"positive-delivery", "display"}
    assert request.sent is None


@pytest.mark.parametrize(
    "headers",
    [
        ("NS: imdn <urn:ietf:params:imdn>", "imdn.Message-ID: abc"),  # no request header
        ("NS: imdn <urn:ietf:params:imdn>", "imdn.Disposition-Notification: positive-delivery"),
        (
            "NS: imdn <urn:ietf:params:imdn>",
            "imdn.Message-ID: a",
            "imdn.Disposition-Notification: ",
        ),
        ("NS: imdn <urn:other>", "imdn.Message-ID: a", "imdn.Disposition-Notification: display"),
        ("Message-ID: a", "Disposition-Notification: positive-delivery"),  # CPIM namespace
    ],
    ids=["no-request", "no-message-id", "empty", "wrong-namespace", "no-prefix"],
)
def test_no_request(headers: tuple[str, ...]) -> None:
    assert read_disposition_request(parse_cpim(_im(*headers))) is None


# --- XEP-0184 <request/> -> IMDN positive-delivery request ---

SENT = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)


def _plain() -> bytes:
    msg = new_cpim(
        from_=Address("im:juliet@example.com"),
        to=[Address("im:romeo@example.net")],
        content_type="text/plain; charset=utf-8",
        body=b"Wherefore art thou?",
    )
    return build_cpim(msg)


def test_request_delivery_adds_rfc5438_headers() -> None:
    msg = request_delivery(parse_cpim(_plain()), "QmFzZTY0aWQ", SENT)
    wire = build_cpim(msg)
    assert wire.startswith(
        b"From: <im:juliet@example.com>\r\nTo: <im:romeo@example.net>\r\n"
        b"NS: imdn <urn:ietf:params:imdn>\r\n"
        b"imdn.Message-ID: QmFzZTY0aWQ\r\n"
        b"DateTime: 2024-02-03T04:05:06Z\r\n"
        b"imdn.Disposition-Notification: positive-delivery\r\n\r\n"
    )
    request = read_disposition_request(parse_cpim(wire))
    assert request == DispositionRequest("QmFzZTY0aWQ", SENT, frozenset({"positive-delivery"}))


def test_request_delivery_reuses_prefix_and_datetime() -> None:
    base = parse_cpim(
        _im("DateTime: 2000-01-01T00:00:00Z", "NS: r <urn:ietf:params:imdn>", "NS: imdn <urn:x>")
    )
    msg = request_delivery(base, "id1", SENT, negative=True)
    assert [h.line() for h in msg.headers[len(base.headers) :]] == [
        "r.Message-ID: id1",
        "r.Disposition-Notification: positive-delivery, negative-delivery",
    ]
    request = read_disposition_request(msg)
    assert request is not None
    assert request.sent == datetime(2000, 1, 1, tzinfo=UTC)


def test_request_delivery_picks_a_free_prefix() -> None:
    base = parse_cpim(_im("NS: imdn <urn:x>"))
    msg = request_delivery(base, "id1", SENT)
    assert msg.headers[len(base.headers)].line() == "NS: imdn1 <urn:ietf:params:imdn>"
    assert read_disposition_request(msg) is not None


def test_request_delivery_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="token"):
        request_delivery(parse_cpim(_plain()), "has space", SENT)
    with pytest.raises(ValueError, match="default namespace"):
        request_delivery(parse_cpim(_im("NS: <urn:x>")), "id", SENT)


def test_new_message_id() -> None:
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_\-]{16}", i) for i in ids)
    assert new_message_id(b"\x00" * 8) == "AAAAAAAAAAA"
    with pytest.raises(ValueError):
        new_message_id(b"1234567")


# --- XEP-0184 <received/> -> IMDN delivered ---


def test_delivery_notification_answers_the_request() -> None:
    request = read_disposition_request(parse_cpim(IM_7_1_1_3))
    assert request is not None
    msg = delivery_notification(
        request,
        from_=Address("im:bob@example.com", "Bob"),
        to=Address("im:alice@example.com", "Alice"),
        message_id="d834jied93rf",
        recipient_uri="im:bob@example.com",
    )
    back = parse_cpim(build_cpim(msg))
    assert is_imdn(back)
    assert read_disposition_request(back) is None
    assert back.get("Disposition-Notification", "urn:ietf:params:imdn") is None
    assert parse_notification(back) == Imdn(
        "34jk324j",
        datetime(2006, 4, 4, 12, 16, 49, tzinfo=MINUS5),
        "delivery",
        "delivered",
        "im:bob@example.com",
        "im:bob@example.com",
    )


def test_delivery_notification_only_when_requested() -> None:
    only_negative = DispositionRequest("m", SENT, frozenset({"negative-delivery"}))
    with pytest.raises(ValueError, match="did not request"):
        delivery_notification(
            only_negative, from_=Address("im:b@x"), to=Address("im:a@x"), message_id="n"
        )
    no_datetime = DispositionRequest("m", None, frozenset({"positive-delivery"}))
    with pytest.raises(ValueError, match="DateTime"):
        delivery_notification(
            no_datetime, from_=Address("im:b@x"), to=Address("im:a@x"), message_id="n"
        )


# --- IMDN -> XEP-0184 outcome (DIGEST §16.2 table) ---


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("delivered", Receipt("x1")),
        ("failed", DeliveryFailure("x1", "failed", "recipient-unavailable")),
        ("forbidden", DeliveryFailure("x1", "forbidden", "forbidden")),
        ("error", DeliveryFailure("x1", "error", "internal-server-error")),
        (None, None),
    ],
)
def test_digest_16_2_outcomes(status: str | None, outcome: object) -> None:
    imdn = Imdn("m", SENT, "delivery", status)
    assert xmpp_outcome(imdn, "x1") == outcome


def test_failure_conditions_are_rfc6120_conditions() -> None:
    from mappings.errors import XMPP_CONDITIONS

    assert set(FAILURE_CONDITIONS.values()) <= XMPP_CONDITIONS


def test_processing_notification_maps_to_nothing() -> None:
    assert xmpp_outcome(Imdn("m", SENT, "processing", "stored"), "x") is None


def test_end_to_end_receipt_flow() -> None:
    """XMPP <request/> id=x1 -> SIP IM -> SIP IMDN delivered -> <received id=x1/>."""
    message_id = new_message_id(b"0123456789ab")
    store = {message_id: "x1"}  # the bridge's correlation store
    im = request_delivery(parse_cpim(_plain()), message_id, SENT)
    request = read_disposition_request(parse_cpim(build_cpim(im)))  # at the SIP UA
    assert request is not None
    notification = delivery_notification(
        request,
        from_=Address("im:romeo@example.net"),
        to=Address("im:juliet@example.com"),
        message_id=new_message_id(),
    )
    imdn = parse_notification(parse_cpim(build_cpim(notification)))  # back at the gateway
    assert xmpp_outcome(imdn, store[imdn.message_id]) == Receipt("x1")


# --- document parsing and building ---


def _imdn(inner: bytes) -> bytes:
    return b'<imdn xmlns="urn:ietf:params:xml:ns:imdn">' + inner + b"</imdn>"


def test_unknown_status_and_extensions_ignored() -> None:
    body = _imdn(
        b"<message-id>m</message-id><datetime>bad</datetime><x:e xmlns:x='urn:x'/>"
        b"<delivery-notification><status><x:new xmlns:x='urn:x'/><displayed/></status>"
        b"</delivery-notification>"
    )
    assert parse_imdn(body) == Imdn("m", None, "delivery", None)


@pytest.mark.parametrize(
    "body",
    [
        _imdn(b"<datetime>2008-04-04T12:16:49Z</datetime><delivery-notification/>"),
        _imdn(b"<message-id>m</message-id><datetime>2008-04-04T12:16:49Z</datetime>"),
        b"<imdn><message-id>m</message-id></imdn>",
    ],
    ids=["no-message-id", "no-notification", "no-namespace"],
)
def test_malformed_imdn(body: bytes) -> None:
    with pytest.raises(ImdnError) as info:
        parse_imdn(body)
    assert info.value.sip_status == 400


def test_hostile_imdn_rejected() -> None:
    with pytest.raises(XmlRejected):
        parse_imdn(b'<!DOCTYPE imdn SYSTEM "file:///etc/passwd">' + _imdn(b""))


def test_parse_notification_requires_disposition() -> None:
    plain = IMDN_7_2_1_1.replace(b"Content-Disposition: notification\r\n", b"")
    assert not is_imdn(parse_cpim(plain))
    with pytest.raises(ImdnError):
        parse_notification(parse_cpim(plain))


@pytest.mark.parametrize(
    "doc",
    [
        Imdn("34jk324j", SENT, "delivery", "delivered", "im:bob@example.com"),
        Imdn("m", SENT, "delivery", "failed"),
        Imdn("m", SENT, "display", "displayed", "im:b@x", "im:c@x", "Hello"),
        Imdn("m", SENT, "processing", "stored"),
    ],
)
def test_build_round_trips_and_validates(doc: Imdn) -> None:
    body = build_imdn(doc)
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    back = parse_imdn(body)
    expected_original = doc.original_recipient_uri or doc.recipient_uri
    assert back == Imdn(
        doc.message_id,
        doc.datetime,
        doc.kind,
        doc.status,
        doc.recipient_uri,
        expected_original,
        doc.subject,
    )
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    assert schema.validate(etree.fromstring(body)), schema.error_log


def test_imdn_validation() -> None:
    with pytest.raises(ValueError):
        Imdn("m", SENT, "display", "delivered")
    with pytest.raises(ValueError):
        build_imdn(Imdn("m", None, "delivery", "delivered"))
