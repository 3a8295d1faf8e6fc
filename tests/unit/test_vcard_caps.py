"""issue 22: the vCard of a bridged SIP contact (XEP-0054) and the XEP-0115 caps hash."""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.xmpp.caps import CAPS_NODE, NS_CAPS, Caps, caps_element, caps_ver
from gateway.xmpp.disco import (
    NS_VCARD,
    Features,
    contact_caps,
    contact_info,
    disco_info,
)
from mappings.addresses import AddressError, AddressingMode, DomainMap
from mappings.jid import parse_jid
from mappings.vcard import ContactCard, contact_card, vcard_element

pytestmark = pytest.mark.unit

V = "{vcard-temp}"
MIRRORED = DomainMap("sip.example.org", AddressingMode.MIRRORED)
ESCAPED = DomainMap("gw.example.org", AddressingMode.ESCAPED)


# -- XEP-0115 §5.1 ----------------------------------------------------------------------------


def test_caps_ver_simple_example_of_5_2() -> None:
    """XEP-0115 §5.2: the Exodus example hashes to QgayPKawpkPSDYmwT/WM94uAlu0=."""
    features = (
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/caps",
    )
    ver = caps_ver([("client", "pc", "", "Exodus 0.9.1")], features)
    assert ver == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_caps_ver_sorts_identities_by_category_type_lang_in_octet_order() -> None:
    """§5.1 steps 2-3 and 5: order of input does not matter; i;octet, not locale order."""
    idents = [("client", "pc", "en", "Psi"), ("client", "pc", "el", "Ψ"), ("client", "Pc", "", "")]
    s = "client/Pc//<client/pc/el/Ψ<client/pc/en/Psi<Z<a<"
    want = base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()
    assert caps_ver(idents, ["a", "Z"]) == want
    assert caps_ver(reversed(idents), ["Z", "a"]) == want


@pytest.mark.parametrize(
    "features",
    [Features(), Features(chat_states=True, receipts=True, xhtml_im=True), Features(receipts=True)],
)
def test_contact_caps_hash_the_contact_disco(features: Features) -> None:
    """The ver in presence is §5.1 over exactly what disco#info at node#ver answers."""
    info = contact_info(features)
    assert [(i.category, i.type) for i in info.identities] == [("client", "phone")]
    assert NS_VCARD in info.features and len(set(info.features)) == len(info.features)
    s = "".join(f"{i.category}/{i.type}//{i.name or ''}<" for i in info.identities)
    s += "".join(f"{f}<" for f in sorted(info.features))
    want = base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()
    caps = contact_caps(features)
    assert caps == Caps(CAPS_NODE, want)
    assert caps.node_ver == f"{CAPS_NODE}#{want}"
    # the full JID answers the same; the bare JID adds account/registered only
    assert disco_info(features, has_local=True, has_resource=True) == info
    bare = disco_info(features, has_local=True, has_resource=False)
    assert bare.features == info.features
    assert [(i.category, i.type) for i in bare.identities] == [
        ("account", "registered"),
        ("client", "phone"),
    ]


def test_caps_differ_with_features_and_element_shape() -> None:
    assert contact_caps(Features()).ver != contact_caps(Features(receipts=True)).ver
    c = caps_element(Caps("n", "v="))
    assert c.tag == f"{{{NS_CAPS}}}c"
    assert c.attrib == {"hash": "sha-1", "node": "n", "ver": "v="}


# -- XEP-0054 vCard ---------------------------------------------------------------------------


def _fields(card: ContactCard) -> dict[str, str | None]:
    v = vcard_element(card)
    assert v.tag == f"{V}vCard"
    assert [c.tag for c in v] == [f"{V}FN", f"{V}TEL", f"{V}URL"]  # XEP-0054 DTD order
    tel = v.find(f"{V}TEL")
    assert tel is not None and [c.tag for c in tel] == [f"{V}VOICE", f"{V}NUMBER"]
    return {
        "FN": v.findtext(f"{V}FN"),
        "NUMBER": v.findtext(f"{V}TEL/{V}NUMBER"),
        "URL": v.findtext(f"{V}URL"),
    }


def test_mirrored_contact_card_user_part_and_sip_uri() -> None:
    card = contact_card(parse_jid("romeo@sip.example.org/phone"), MIRRORED)
    assert card == ContactCard("romeo", "sip:romeo@sip.example.org")
    assert _fields(card) == {
        "FN": "romeo",
        "NUMBER": "sip:romeo@sip.example.org",
        "URL": "sip:romeo@sip.example.org",
    }


def test_display_name_wins_and_is_asked_with_the_aor() -> None:
    asked: list[str] = []

    def names(aor: str) -> str | None:
        asked.append(aor)
        return "  Romeo Montague " if aor == "sip:romeo@sip.example.org" else None

    assert contact_card(parse_jid("romeo@sip.example.org"), MIRRORED, names).full_name == (
        "Romeo Montague"
    )
    assert contact_card(parse_jid("tybalt@sip.example.org"), MIRRORED, names).full_name == (
        "tybalt"
    )
    assert asked == ["sip:romeo@sip.example.org", "sip:tybalt@sip.example.org"]


def test_linked_xmpp_account_is_the_jabberid_asked_with_the_aor() -> None:
    """RFC 7081 linked identities: the user file's `xmpp` of a hosted user, in JABBERID
    (XEP-0054 DTD order: after TEL, before URL); none for other contacts."""
    asked: list[str] = []

    def linked(aor: str) -> str | None:
        asked.append(aor)
        return "romeo@example.org" if aor == "sip:romeo@sip.example.org" else None

    card = contact_card(parse_jid("romeo@sip.example.org/phone"), MIRRORED, None, linked)
    assert card == ContactCard("romeo", "sip:romeo@sip.example.org", "romeo@example.org")
    v = vcard_element(card)
    assert [c.tag for c in v] == [f"{V}FN", f"{V}TEL", f"{V}JABBERID", f"{V}URL"]
    assert v.findtext(f"{V}JABBERID") == "romeo@example.org"
    other = contact_card(parse_jid("tybalt@sip.example.org"), MIRRORED, None, linked)
    assert other.jabber_id is None and _fields(other)["FN"] == "tybalt"
    assert asked == ["sip:romeo@sip.example.org", "sip:tybalt@sip.example.org"]


def test_escaped_contacts_sip_and_tel() -> None:
    card = contact_card(parse_jid("o\\27malley\\40example.com@gw.example.org"), ESCAPED)
    assert card == ContactCard("o'malley", "sip:o'malley@example.com")
    tel = contact_card(parse_jid("+15551234567@gw.example.org"), ESCAPED)
    assert _fields(tel) == {"FN": "+15551234567", "NUMBER": "+15551234567",
                            "URL": "tel:+15551234567"}  # fmt: skip


@pytest.mark.parametrize(
    ("jid", "dmap", "condition"),
    [
        ("sip.example.org", MIRRORED, "item-not-found"),  # the component itself
        ("romeo@other.example.org", MIRRORED, "item-not-found"),  # a domain not served
        ("romeo@gw.example.org", ESCAPED, "item-not-found"),  # no SIP host in the local part
        ("romeo\\40bad_host@gw.example.org", ESCAPED, "item-not-found"),
        ("a\\5cb@gw.example.org", ESCAPED, "jid-malformed"),  # not canonical XEP-0106
    ],
)
def test_jids_that_name_no_sip_user(jid: str, dmap: DomainMap, condition: str) -> None:
    with pytest.raises(AddressError) as err:
        contact_card(parse_jid(jid), dmap)
    assert err.value.xmpp_condition == condition


# -- issue 22 item 2: caps per contact ---------------------------------------------------------


def test_caps_table_answers_every_combination_of_the_allowed_features() -> None:
    from gateway.xmpp.disco import CapsTable

    table = CapsTable(Features(chat_states=True, receipts=True, xhtml_im=True))
    assert len(table) == 8  # 2**3 combinations, 8 distinct vers
    for f in Features(chat_states=True, receipts=True, xhtml_im=True).subsets():
        caps = table.caps(f)
        assert caps == contact_caps(f)
        assert table.info(caps.ver) == contact_info(f)
    assert table.info("QgayPKawpkPSDYmwT/WM94uAlu0=") is None  # not one of ours
    narrow = CapsTable(Features(receipts=True))
    assert len(narrow) == 2
    # a feature the gateway does not implement is never advertised, whatever a peer showed
    assert narrow.caps(Features(chat_states=True, receipts=True)) == contact_caps(
        Features(receipts=True)
    )
    assert Features(chat_states=True, xhtml_im=True).within(Features(chat_states=True)) == (
        Features(chat_states=True)
    )


# -- issue 22 item 1: display names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Romeo Montague", "Romeo Montague"),
        ("  Romeo\r\nMontague\t", "Romeo Montague"),
        ("Ro\x00meo\u202e", "Ro meo"),  # NUL and a bidi override are no part of a name
        ("\x1b[31m", "[31m"),
        ("x" * 200, "x" * 64),
        ("", None),
        (" \x00\u200b ", None),
        (None, None),
    ],
)
def test_clean_display_name(raw: str | None, shown: str | None) -> None:
    from mappings.vcard import clean_display_name

    assert clean_display_name(raw) == shown


def test_first_name_asks_the_user_file_first_then_what_sip_showed() -> None:
    from mappings.vcard import first_name

    user_file = {"sip:romeo@sip.example.org": "Romeo (operator)"}.get
    seen = {"sip:romeo@sip.example.org": "Romeo M", "sip:tybalt@sip.example.org": "Ty\x07balt"}
    names = first_name(user_file, None, seen.get)
    card = contact_card(parse_jid("romeo@sip.example.org"), MIRRORED, names)
    assert card.full_name == "Romeo (operator)"
    assert contact_card(parse_jid("tybalt@sip.example.org"), MIRRORED, names).full_name == (
        "Ty balt"
    )
    assert contact_card(parse_jid("mercutio@sip.example.org"), MIRRORED, names).full_name == (
        "mercutio"
    )
