"""mappings.iscomposing: RFC 3994 documents and RFC 7573 §8 Tables 3/4."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mappings.iscomposing import (
    CHAT_STATE_TO_ISCOMPOSING,
    ISCOMPOSING_TO_CHAT_STATE,
    IsComposing,
    IsComposingError,
    build_iscomposing,
    chat_state_for,
    iscomposing_for,
    parse_iscomposing,
)
from mappings.xmlsafe import XmlRejected

STANDARDS = Path(__file__).resolve().parents[1] / "vectors" / "standards"

EXAMPLE_ACTIVE = b"""<?xml version="1.0" encoding="UTF-8"?>
   <isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
   xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
   xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing
   iscomposing.xsd">
     <state>active</state>
     <contenttype>text/plain</contenttype>
     <refresh>90</refresh>
   </isComposing>"""

EXAMPLE_IDLE = b"""<?xml version="1.0" encoding="UTF-8"?>
   <isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
   xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
   xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing
   iscomposing.xsd">
     <state>idle</state>
     <lastactive>2003-01-27T10:43:00Z</lastactive>
     <contenttype>audio</contenttype>
   </isComposing>"""


def _doc(inner: bytes) -> bytes:
    return (
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">' + inner + b"</isComposing>"
    )


def test_rfc3994_5_examples() -> None:
    assert parse_iscomposing(EXAMPLE_ACTIVE) == IsComposing("active", None, "text/plain", 90)
    assert parse_iscomposing(EXAMPLE_IDLE) == IsComposing(
        "idle", datetime(2003, 1, 27, 10, 43, tzinfo=UTC), "audio"
    )


@pytest.mark.parametrize("state", ["typing", "ACTIVE", "", "paused"])
def test_unknown_state_is_idle(state: str) -> None:
    """RFC 3994 §4: unknown state tokens MUST be treated as idle."""
    assert parse_iscomposing(_doc(f"<state>{state}</state>".encode())).state == "idle"
    assert parse_iscomposing(_doc(b"")).state == "idle"


@pytest.mark.parametrize("refresh", ["0", "-5", "abc", "1.5", "\u00b2", "99999999999"])
def test_bad_refresh_reads_as_absent(refresh: str) -> None:
    body = _doc(f"<state>active</state><refresh>{refresh}</refresh>".encode())
    assert parse_iscomposing(body).refresh is None


def test_bad_lastactive_reads_as_absent_and_extensions_ignored() -> None:
    body = _doc(
        b'<state>idle</state><lastactive>yesterday</lastactive><x:y xmlns:x="urn:x">z</x:y>'
    )
    assert parse_iscomposing(body) == IsComposing("idle")


@pytest.mark.parametrize(
    "body",
    [
        b"<isComposing><state>active</state></isComposing>",
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a"/>',
    ],
)
def test_wrong_document_rejected(body: bytes) -> None:
    with pytest.raises(IsComposingError) as info:
        parse_iscomposing(body)
    assert info.value.sip_status == 400


def test_hostile_xml_rejected() -> None:
    with pytest.raises(XmlRejected):
        parse_iscomposing(b'<!DOCTYPE a [<!ENTITY x "y">]>' + _doc(b"<state>&x;</state>"))


def test_build_order_and_declaration() -> None:
    body = build_iscomposing(
        IsComposing("active", datetime(2024, 1, 1, tzinfo=UTC), "text/plain", 60)
    )
    assert body == (
        b"<?xml version='1.0' encoding='UTF-8'?>\n"
        b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state>'
        b"<lastactive>2024-01-01T00:00:00Z</lastactive><contenttype>text/plain</contenttype>"
        b"<refresh>60</refresh></isComposing>"
    )


def test_build_validates_against_schema() -> None:
    xsd = STANDARDS / "schemas" / "im-iscomposing.xsd"
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    for doc in (IsComposing("idle"), IsComposing("active", contenttype="text", refresh=90)):
        assert schema.validate(etree.fromstring(build_iscomposing(doc))), schema.error_log
    assert not schema.validate(etree.fromstring(_doc(b"<refresh>1</refresh>")))


def test_value_validation() -> None:
    with pytest.raises(ValueError):
        IsComposing("typing")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        IsComposing("active", refresh=0)


# --- RFC 7573 §8 Table 3: isComposing -> chat state ---


@pytest.mark.parametrize(("state", "chat"), [("active", "composing"), ("idle", "active")])
def test_table3(state: str, chat: str) -> None:
    assert ISCOMPOSING_TO_CHAT_STATE[state] == chat  # type: ignore[index]
    assert chat_state_for(IsComposing(state)) == chat  # type: ignore[arg-type]


# --- RFC 7573 §8 Table 4: chat state -> isComposing ---


@pytest.mark.parametrize(
    ("chat", "state"),
    [
        ("composing", "active"),
        ("active", "idle"),
        ("inactive", "idle"),
        ("paused", "idle"),
        ("gone", None),
    ],
)
def test_table4(chat: str, state: str | None) -> None:
    assert CHAT_STATE_TO_ISCOMPOSING[chat] == state  # type: ignore[index]
    doc = iscomposing_for(chat, refresh=90)  # type: ignore[arg-type]
    assert (doc.state if doc else None) == state


def test_refresh_only_on_active() -> None:
    assert iscomposing_for("composing", refresh=90) == IsComposing(
        "active", contenttype="text/plain", refresh=90
    )
    assert iscomposing_for("paused", refresh=90) == IsComposing("idle", contenttype="text/plain")


def test_tables_cover_every_state() -> None:
    assert set(CHAT_STATE_TO_ISCOMPOSING) == {"active", "composing", "paused", "inactive", "gone"}
    assert set(ISCOMPOSING_TO_CHAT_STATE) == {"active", "idle"}


@settings(max_examples=100)
@given(
    st.builds(
        IsComposing,
        st.sampled_from(["active", "idle"]),
        st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
        st.one_of(st.none(), st.sampled_from(["text/plain", "text", "audio"])),
        st.one_of(st.none(), st.integers(1, 10**9 - 1)),
    )
)
def test_round_trip(doc: IsComposing) -> None:
    assert parse_iscomposing(build_iscomposing(doc)) == doc
