"""JIDs (RFC 7622), XEP-0106 escaping, %-coding (RFC 3986 §2.1) and the RFC 7247 address
mapping, against their specifications (issue 25: replaces the frozen-copy oracle of
issue 11). Generators write addresses from the rules and keep the expected parts."""

from __future__ import annotations

import string
import sys
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import addresses, jid, model
from mappings.addresses import AddressError, AddressingMode, DomainMap
from mappings.errors import MappingError
from mappings.jid import Jid, JidError

SPEC = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SIP_DOMAIN, XMPP_DOMAIN = "sip.example.org", "xmpp.example"


def domain_map(mode: str) -> DomainMap:
    return DomainMap(SIP_DOMAIN, AddressingMode(mode), frozenset({XMPP_DOMAIN}))


# -- RFC 7622 ---------------------------------------------------------------------------------

FORBIDDEN_LOCAL = "\"&'/:<>@"  # RFC 7622 §3.3.1
ASCII_LOCAL = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in FORBIDDEN_LOCAL)
locals_ = st.text(ASCII_LOCAL, min_size=1, max_size=12)
resources = st.text(st.sampled_from([chr(c) for c in range(0x20, 0x7F)]), min_size=1, max_size=12)
resources = resources.filter(lambda r: r.strip() == r)  # no leading/trailing space
labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
domains = st.lists(labels, min_size=1, max_size=3).map(".".join)


def test_control_class_is_unicode_cc() -> None:
    """The control-character rule of the model and the mapping is exactly Unicode Cc."""
    cc = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cc"}
    for rule in (model._CONTROL, addresses._CONTROL):
        assert {ch for ch in map(chr, range(sys.maxunicode + 1)) if rule.match(ch)} == cc


@SPEC
@given(locals_, domains, st.none() | resources)
def test_jid_parts_and_round_trip(local: str, domain: str, resource: str | None) -> None:
    text = f"{local}@{domain}" + ("" if resource is None else f"/{resource}")
    parsed = jid.parse_jid(text)
    assert (parsed.local, parsed.domain, parsed.resource) == (local, domain, resource)
    assert str(parsed) == text
    assert jid.parse_jid(str(parsed)) == parsed


@pytest.mark.parametrize("c", [*FORBIDDEN_LOCAL, " ", "\x00", "\x7f", "\u200b"])
def test_localpart_forbidden_characters(c: str) -> None:
    with pytest.raises(JidError):
        jid.check_localpart(f"a{c}b")


@pytest.mark.parametrize("c", list(ASCII_LOCAL))
def test_localpart_allowed_ascii(c: str) -> None:
    jid.check_localpart(f"a{c}b")


def test_part_lengths() -> None:
    """Each part is 1..1023 octets of UTF-8 (RFC 7622 §3.2-§3.4)."""
    jid.check_localpart("a" * 1023)
    jid.check_resourcepart("é" * 511 + "a")
    for rule in (jid.check_localpart, jid.check_resourcepart):
        for bad in ("", "a" * 1024, "é" * 512):
            with pytest.raises(JidError):
                rule(bad)
    for bad in ("", "ex..org", "a" * 64 + ".org", "a b.org", "[::1"):
        with pytest.raises(JidError):
            jid.check_domainpart(bad)
    for good in ("example.org", "a" * 63 + ".org", "[::1]", "192.0.2.1"):
        jid.check_domainpart(good)


@pytest.mark.parametrize("text", ["@example.com", "a@b/", "a@", "/r", ""])
def test_parse_jid_refuses_empty_parts(text: str) -> None:
    with pytest.raises(JidError):
        jid.parse_jid(text)


# -- XEP-0106 escaping ------------------------------------------------------------------------

escapable = st.text(ASCII_LOCAL + FORBIDDEN_LOCAL + " \\é", min_size=1, max_size=12).filter(
    lambda t: t.strip(" ") == t
)


@SPEC
@given(escapable)
def test_escape_round_trip(text: str) -> None:
    """XEP-0106 §4: escaping yields a valid localpart, unescaping gives the text back."""
    escaped = jid.escape_local(text)
    assert not set(escaped) & set(FORBIDDEN_LOCAL + " ")
    jid.check_localpart(escaped)
    assert jid.unescape_local(escaped) == text
    assert jid.is_canonical_escape(escaped)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [  # XEP-0106 §4.3 table and examples
        ("space cadet", r"space\20cadet"),
        ('call me "ishmael"', r"call\20me\20\22ishmael\22"),
        ("at&t guy", r"at\26t\20guy"),
        ("d'artagnan", r"d\27artagnan"),
        ("/.fanboy", r"\2f.fanboy"),
        ("::foo::", r"\3a\3afoo\3a\3a"),
        ("<foo>", r"\3cfoo\3e"),
        ("user@host", r"user\40host"),
        (r"c:\net", r"c\3a\net"),
        (r"c:\\net", r"c\3a\\net"),
        (r"c:\cool stuff", r"c\3a\cool\20stuff"),
        (r"c:\5commas", r"c\3a\5c5commas"),
    ],
)
def test_escape_examples(text: str, escaped: str) -> None:
    assert jid.escape_local(text) == escaped
    assert jid.unescape_local(escaped) == text


# -- %-coding (RFC 3986 §2.1, RFC 3261 §19.1.2) -------------------------------------------------


@SPEC
@given(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from([addresses._SIP_USER_SAFE, addresses._PARAM_SAFE, addresses._ATEXT, ""]),
)
def test_percent_round_trip(text: str, safe: str) -> None:
    encoded = addresses.percent_encode(text, safe)
    allowed = set(string.ascii_letters + string.digits + safe + "%0123456789ABCDEF")
    assert set(encoded) <= allowed
    assert addresses.percent_decode(encoded) == text


@pytest.mark.parametrize("bad", ["%", "%4", "%zz", "a%g0", "%ff"])  # %ff: not UTF-8
def test_percent_decode_refuses_bad_escapes(bad: str) -> None:
    with pytest.raises(MappingError):
        addresses.percent_decode(bad)


# -- RFC 7247 mapping ---------------------------------------------------------------------------

sip_users = st.text(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/", min_size=1,
                    max_size=10)  # fmt: skip
sip_users = sip_users.filter(lambda u: u not in (".", ".."))


@SPEC
@given(sip_users, st.sampled_from(["mirrored", "escaped"]))
def test_sip_user_to_jid_and_back(user: str, mode: str) -> None:
    """A SIP user is seen on XMPP at the component domain (mirrored) or escaped under the
    gateway domain (XEP-0100 style); `jid_to_sip_target` is the inverse."""
    dm = domain_map(mode)
    host = SIP_DOMAIN if mode == "mirrored" else "example.com"
    uri = f"sip:{addresses.encode_sip_user(user)}@{host}"
    j = addresses.sip_uri_to_jid(uri, domain_map=dm)
    if mode == "mirrored":
        assert (j.local, j.domain, j.resource) == (jid.escape_local(user), SIP_DOMAIN, None)
    else:
        assert (j.local, j.domain) == (jid.escape_local(f"{user}@{host}"), SIP_DOMAIN)
    back = addresses.jid_to_sip_target(j, domain_map=dm)
    assert addresses.sip_uri_to_jid(str(back), domain_map=dm) == j
    assert back.address == addresses.parse_address(uri).address


@SPEC
@given(locals_, st.none() | resources, st.sampled_from(["mirrored", "escaped"]))
def test_xmpp_user_to_sip_and_back(local: str, resource: str | None, mode: str) -> None:
    """RFC 7247 §4-§5: an XMPP user keeps its domain on SIP; the resource travels as the
    GRUU `gr` parameter (RFC 7247 §5.3.2); `sip_target_to_jid` is the inverse."""
    dm = domain_map(mode)
    j = Jid(local, XMPP_DOMAIN, resource)
    uri = addresses.jid_to_sip_uri(j, domain_map=dm)
    text = str(uri)
    assert text.startswith("sip:") and f"@{XMPP_DOMAIN}" in text
    assert (uri.gr is not None) == (resource is not None)
    assert addresses.sip_target_to_jid(text, domain_map=dm) == j


@pytest.mark.parametrize(
    ("uri", "status", "condition"),
    [
        (f"sips:romeo@{SIP_DOMAIN}", 403, "forbidden"),  # R7247-06: sips never crosses
        (f"mailto:romeo@{SIP_DOMAIN}", 416, "jid-malformed"),  # scheme not usable
        (f"sip:romeo:pw@{SIP_DOMAIN}", 400, "jid-malformed"),  # passwords refused
        ("sip:ro%zzmeo@sip.example.org", 400, "jid-malformed"),  # bad escape
        ("sip:romeo@other.example", 403, "forbidden"),  # outside the mirrored domain
    ],
)
def test_sip_source_refusals(uri: str, status: int, condition: str) -> None:
    with pytest.raises(AddressError) as info:
        addresses.sip_uri_to_jid(uri, domain_map=domain_map("mirrored"))
    assert (info.value.sip_status, info.value.xmpp_condition) == (status, condition)


def test_xmpp_source_outside_served_domains_is_403() -> None:
    with pytest.raises(AddressError) as info:
        addresses.jid_to_sip_uri(Jid("j", "elsewhere.example"), domain_map=domain_map("mirrored"))
    assert (info.value.sip_status, info.value.xmpp_condition) == (403, "forbidden")


# -- the neutral model ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\x00b", "\x85", "a\ud800", "\x7f", "x\ny", ""])
def test_model_refuses_empty_controls_and_surrogates(bad: str) -> None:
    """Users, domains, ids: non-empty UTF-8 text without controls (DIGEST §23.4)."""
    a, b = model.Address("a", "b.c"), model.Address("d", "e.f")
    for build in (
        lambda: model.Address(bad, "example.com"),
        lambda: model.Address("a", bad),
        lambda: model.MessageOp(a, b, bad, (model.BodyPart.plain("hi"),)),
    ):
        with pytest.raises(ValueError, match=r"control|empty|UTF-8"):
            build()


@pytest.mark.parametrize(
    ("number", "ok"), [("+15551234567", True), ("+1-555-123", False), ("5551234", False)]
)
def test_model_address_without_domain_is_a_global_number(number: str, ok: bool) -> None:
    """No domain only for a global number: "+" and digits (RFC 3966 §5.1.4, E.164)."""
    if ok:
        assert model.Address(number, None).user == number
    else:
        with pytest.raises(ValueError, match="global number"):
            model.Address(number, None)
