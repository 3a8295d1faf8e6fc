"""mappings.imdn display notifications (RFC 5438 §7.2.1.2) for XEP-0333 markers (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mappings.cpim import Address, build_cpim, new_cpim, parse_cpim
from mappings.imdn import (
    Displayed,
    DispositionRequest,
    display_notification,
    parse_notification,
    read_disposition_request,
    request_delivery,
    xmpp_outcome,
)

SENT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def message() -> object:
    return new_cpim(
        from_=Address("sip:juliet@example.com"),
        to=[Address("sip:romeo@example.net")],
        content_type="text/plain",
        body=b"hi",
        sent=SENT,
    )


@pytest.mark.parametrize(
    ("delivery", "display", "header"),
    [
        (True, True, "positive-delivery, display"),
        (False, True, "display"),
        (True, False, "positive-delivery"),
    ],
)
def test_request_lists_display(delivery: bool, display: bool, header: str) -> None:
    msg = request_delivery(message(), "M1234567", SENT, delivery=delivery, display=display)  # type: ignore[arg-type]
    text = build_cpim(msg).decode()
    assert f"imdn.Disposition-Notification: {header}\r\n" in text
    request = read_disposition_request(parse_cpim(build_cpim(msg)))
    assert request is not None
    assert request.wants_display() is display and request.wants("delivered") is delivery


def test_request_asks_for_something() -> None:
    with pytest.raises(ValueError, match="at least one"):
        request_delivery(message(), "M1234567", SENT, delivery=False)  # type: ignore[arg-type]


def test_display_notification_round_trip() -> None:
    request = DispositionRequest("M1", SENT, frozenset({"positive-delivery", "display"}))
    msg = display_notification(
        request,
        from_=Address("sip:romeo@example.net"),
        to=Address("sip:juliet@example.com"),
        message_id="N1",
        recipient_uri="sip:romeo@example.net",
    )
    wire = build_cpim(msg)
    assert b"<display-notification><status><displayed/></status></display-notification>" in wire
    assert b"Content-Disposition: notification" in wire
    imdn = parse_notification(parse_cpim(wire))
    assert (imdn.message_id, imdn.kind, imdn.status, imdn.datetime) == (
        "M1",
        "display",
        "displayed",
        SENT,
    )
    assert xmpp_outcome(imdn, "x7") == Displayed("x7")


def test_display_notification_only_when_asked() -> None:
    request = DispositionRequest("M1", SENT, frozenset({"positive-delivery"}))
    with pytest.raises(ValueError, match="display"):
        display_notification(
            request, from_=Address("sip:a@b"), to=Address("sip:c@d"), message_id="N1"
        )


def test_display_errors_map_to_nothing() -> None:
    request = DispositionRequest("M1", SENT, frozenset({"display"}))
    from mappings.imdn import Imdn

    assert xmpp_outcome(Imdn("M1", SENT, "display", "error"), "x") is None
    assert request.wants_display()
