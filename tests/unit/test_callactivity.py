"""mappings.callactivity: calls shown in XMPP presence (docs/call-activity.md), pure."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.callactivity import (
    CallDisplay,
    call_statuses,
    in_call,
    show_call,
    split_rpid_call,
)
from mappings.dialoginfo import Dialog, DialogInfo, parse_dialog_info
from mappings.pidf import Note, Person, PresenceDocument, Tuple, build_pidf, parse_pidf
from mappings.presence import XmppPresence, pidf_to_xmpp

ENTITY = "sip:alice@example.com"


def dialogs(*states: str) -> DialogInfo:
    return DialogInfo(
        ENTITY,
        1,
        "full",
        tuple(Dialog(f"d{i}", s) for i, s in enumerate(states)),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("states", "calling"),
    [
        ((), False),
        (("trying",), False),  # RFC 4235 §3.7.1: no tag yet, not a call
        (("proceeding",), False),
        (("early",), True),  # ringing
        (("confirmed",), True),
        (("terminated",), False),
        (("terminated", "confirmed"), True),
    ],
)
def test_which_dialog_states_are_a_call(states: tuple[str, ...], calling: bool) -> None:
    assert in_call([dialogs(*states)]) is calling
    assert in_call([dialogs(*states)], rpid=True) is True


BASE = [
    XmppPresence(resource="desk", show="away", statuses=(("At lunch", "en"), ("Essen", "de")),
                 priority=5),
    XmppPresence(resource="phone"),
    XmppPresence(resource="old", available=False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        (
            CallDisplay(),
            [
                XmppPresence(resource="desk", show="dnd", priority=5,
                             statuses=(("On the phone (At lunch)", "en"),
                                       ("On the phone (Essen)", "de"))),
                XmppPresence(resource="phone", show="dnd", statuses=(("On the phone", None),)),
                XmppPresence(resource="old", available=False),
            ],
        ),
        (
            CallDisplay("away", "Am Telefon"),
            [
                XmppPresence(resource="desk", show="away", priority=5,
                             statuses=(("Am Telefon (At lunch)", "en"),
                                       ("Am Telefon (Essen)", "de"))),
                XmppPresence(resource="phone", show="away", statuses=(("Am Telefon", None),)),
                XmppPresence(resource="old", available=False),
            ],
        ),
    ],
)  # fmt: skip
def test_the_mapping_table(display: CallDisplay, expected: list[XmppPresence]) -> None:
    assert show_call(BASE, True, display) == expected
    assert show_call(BASE, False, display) == BASE  # no call: the base, exactly


def test_empty_own_status_is_replaced_by_the_call_text() -> None:
    assert call_statuses([("", "en")], CallDisplay()) == (("On the phone", "en"),)


def test_display_rejects_what_xmpp_cannot_show() -> None:
    with pytest.raises(ValueError):
        CallDisplay("chat")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CallDisplay(status="  ")


def test_rpid_on_the_phone_is_split_from_the_base() -> None:
    doc = PresenceDocument(
        ENTITY,
        (Tuple("ID-desk", "open", notes=(Note("Working"),)),),
        person=Person("p", frozenset({"on-the-phone", "meeting"})),
    )
    base, rpid = split_rpid_call(doc)
    assert rpid and base.person is not None and base.person.activities == {"meeting"}
    shown = show_call(pidf_to_xmpp(base), rpid)
    assert shown == [XmppPresence("desk", show="dnd", statuses=(("On the phone (Working)", None),))]
    # without the activity the document is its own base
    plain = replace(doc, person=None)
    assert split_rpid_call(plain) == (plain, False)


def test_rpid_person_only_document_stays_available() -> None:
    """No tuples: the person is all there is (RFC 3922 §6.3.2); the activity stays."""
    doc = PresenceDocument(ENTITY, (), person=Person("p", frozenset({"on-the-phone"})))
    base, rpid = split_rpid_call(doc)
    assert rpid and base == doc
    assert show_call(pidf_to_xmpp(base), rpid)[0].available


def test_a_published_dialog_document_drives_the_call() -> None:
    body = (
        b'<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
        b'version="0" state="full" entity="sip:alice@example.com">'
        b'<dialog id="x" call-id="c" local-tag="l" remote-tag="r" direction="initiator">'
        b"<state>confirmed</state></dialog></dialog-info>"
    )
    assert in_call([parse_dialog_info(body)])
    ended = body.replace(b"confirmed", b"terminated")
    assert not in_call([parse_dialog_info(ended)])


shows = st.sampled_from([None, "away", "chat", "dnd", "xa"])
langs = st.sampled_from([None, "en", "de"])
presences = st.lists(
    st.builds(
        lambda r, a, s, st_, p: XmppPresence(r, a, s if a else None, st_, p),
        st.sampled_from([None, "a", "b", "c"]),
        st.booleans(),
        shows,
        st.lists(st.tuples(st.text(max_size=20), langs), max_size=2).map(tuple),
        st.integers(-128, 127),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(base=presences, calling=st.booleans(), status=st.text(min_size=1, max_size=30))
def test_a_call_changes_only_show_and_status_and_is_undone_exactly(
    base: list[XmppPresence], calling: bool, status: str
) -> None:
    if not status.strip():
        status = "On the phone"
    display = CallDisplay("dnd", status)
    shown = show_call(base, calling, display)
    assert len(shown) == len(base)
    for before, after in zip(base, shown, strict=True):
        assert (after.resource, after.available, after.priority, after.lang) == (
            before.resource, before.available, before.priority, before.lang,
        )  # fmt: skip
        if calling and before.available:
            assert after.show == "dnd"
            assert all(text.startswith(status) for text, _ in after.statuses)
            assert [lang for _, lang in after.statuses] == (
                [lang for _, lang in before.statuses] or [None]
            )
        else:
            assert after == before
    assert show_call(base, False, display) == base  # the call ended: what it was


def test_pidf_round_trip_of_a_call_presence() -> None:
    """The presence shown during a call survives the PIDF of an S2X watcher too."""
    doc = PresenceDocument(ENTITY, (Tuple("ID-desk", "open"),),
                           person=Person("p", frozenset({"on-the-phone"})))  # fmt: skip
    again = parse_pidf(build_pidf(doc))
    base, rpid = split_rpid_call(again)
    assert rpid and show_call(pidf_to_xmpp(base), rpid)[0].show == "dnd"
