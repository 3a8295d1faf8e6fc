"""gateway.bridge.pager.sip_message, issue 17: S/MIME and PGP/MIME bodies are 415 with a
reason phrase (bare or inside CPIM); an IMDN ``display`` request makes the message markable
(XEP-0333); a display notification body answers it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.bridge.pager import sip_message as sm
from mappings import cpim, imdn
from tests.unit.test_sip_message_mapping import _cpim, inbound, message

ENCRYPTED = "Encrypted Content Cannot Reach XMPP"
SIGNED = (
    b"--b1\r\nContent-Type: text/plain\r\n\r\nsigned hello\r\n--b1\r\n"
    b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\r\nMIIB\r\n--b1--\r\n"
)


@pytest.mark.parametrize(
    ("content_type", "phrase"),
    [
        (
            'multipart/signed; protocol="application/pkcs7-signature"; boundary=b1',
            "Signed Content Not Relayed To XMPP",
        ),
        (
            "application/pkcs7-mime; smime-type=enveloped-data",
            "Encrypted Content Cannot Reach XMPP",
        ),
        (
            'multipart/encrypted; protocol="application/pgp-encrypted"; boundary=b1',
            "Encrypted Content Cannot Reach XMPP",
        ),
    ],
)
def test_protected_bodies_are_415_with_a_reason(content_type: str, phrase: str) -> None:
    with pytest.raises(sm.ProtectedContent) as err:
        inbound(message(SIGNED, content_type))
    assert err.value.sip_status == 415 and err.value.phrase == phrase
    assert dict(err.value.headers)["Accept"] == sm.ACCEPT_HEADER[1]


def test_protected_body_inside_cpim_is_415_too() -> None:
    body = _cpim(
        "sip:romeo@sip.example.org",
        "sip:juliet@example.com",
        "application/pkcs7-mime; smime-type=enveloped-data",
        b"MIIBencrypted",
    )
    with pytest.raises(sm.ProtectedContent) as err:
        inbound(message(body, "message/cpim"))
    assert err.value.phrase == "Encrypted Content Cannot Reach XMPP"


@pytest.mark.parametrize(
    ("requested", "receipt", "markable"),
    [
        ("positive-delivery, display", True, True),
        ("display", False, True),
        ("positive-delivery", True, False),
    ],
)
def test_display_request_makes_the_message_markable(
    requested: str, receipt: bool, markable: bool
) -> None:
    extra = (
        "NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\n"
        f"imdn.Disposition-Notification: {requested}\r\n"
    )
    body = _cpim("sip:romeo@sip.example.org", "sip:juliet@example.com", "text/plain", b"x", extra)
    got = inbound(message(body, "message/cpim"))
    assert got.op is not None
    assert (got.op.receipt_request, got.op.markable) == (receipt, markable)


def test_display_notification_body() -> None:
    request = imdn.DispositionRequest(
        "M1", datetime(2024, 1, 2, tzinfo=UTC), frozenset({"display"})
    )
    ct, body = sm.display_notification_body(
        request,
        sender_uri="sip:juliet@example.com",
        recipient_uri="sip:romeo@sip.example.org",
        message_id="N1",
    )
    assert ct == "message/cpim"
    msg = cpim.parse_cpim(body)
    assert [a.uri for a in msg.to] == ["sip:romeo@sip.example.org"]
    doc = imdn.parse_notification(msg)
    assert (doc.message_id, doc.kind, doc.status) == ("M1", "display", "displayed")
    # and it comes back from SIP as a notification to correlate, not as a message
    got = inbound(
        message(body, ct, sender="<sip:juliet@example.com>;tag=a", uri="sip:romeo@sip.example.org")
    )
    assert got.op is None and got.notification == doc


def test_markable_only_request_wraps_without_positive_delivery() -> None:
    _, body = sm.with_receipt_request(
        ("text/plain;charset=UTF-8", b"hi"),
        sender_uri="sip:juliet@example.com",
        recipient_uri="sip:romeo@example.net",
        message_id="Mid12345678",
        now=datetime(2024, 1, 2, tzinfo=UTC),
        delivery=False,
        display=True,
    )
    request = imdn.read_disposition_request(cpim.parse_cpim(body))
    assert request is not None and request.requested == frozenset({"display"})
