"""mappings.edits: XEP-0308 corrections go to SIP as marked text, XEP-0424 retractions are
refused (issue 17 item 5)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mappings import edits
from mappings.model import Address, BodyPart, MessageOp

NS = "jabber:client"


def children(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(f'<message xmlns="{NS}">{xml}</message>'))


def test_correction_is_found() -> None:
    got = edits.edit_of(
        children('<body>fixed</body><replace id="bad1" xmlns="urn:xmpp:message-correct:0"/>')
    )
    assert got == edits.Correction("bad1")


def test_retraction_both_versions_and_it_wins_over_a_correction() -> None:
    v1 = '<retract id="r1" xmlns="urn:xmpp:message-retract:1"/>'
    assert edits.edit_of(children(v1)) == edits.Retraction("r1")
    v0 = (
        '<apply-to xmlns="urn:xmpp:fasten:0" id="r0">'
        '<retract xmlns="urn:xmpp:message-retract:0"/></apply-to>'
    )
    assert edits.edit_of(children(v0)) == edits.Retraction("r0")
    both = '<replace id="c" xmlns="urn:xmpp:message-correct:0"/>' + v1
    assert edits.edit_of(children(both)) == edits.Retraction("r1")


def test_plain_messages_and_other_fastenings_are_no_edit() -> None:
    assert edits.edit_of(children("<body>hi</body>")) is None
    other = '<apply-to xmlns="urn:xmpp:fasten:0" id="x"><reactions xmlns="urn:x"/></apply-to>'
    assert edits.edit_of(children(other)) is None


def test_corrected_text_carries_the_marker_and_drops_xhtml() -> None:
    a = Address("juliet", "example.com")
    op = MessageOp(
        a,
        a,
        "m1",
        parts=(
            BodyPart.plain("fixed text", "en"),
            BodyPart("application/xhtml+xml", b"<body>fixed</body>", "en"),
        ),
    )
    out = edits.corrected(op)
    assert out.text() == "[correction] fixed text"
    assert [p.media_type for p in out.parts] == ["text/plain"]
    assert out.parts[0].lang == "en"


def test_retraction_refused_with_feature_not_implemented() -> None:
    err = edits.retraction_refused(edits.Retraction("r1"))
    assert err.xmpp_condition == "feature-not-implemented"
    assert "stays visible" in (err.to_xmpp().text or "")
