"""JIDs (RFC 7622) and XEP-0106 escaping: every example of the XEP, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.errors import MappingError
from mappings.jid import (
    Jid,
    JidError,
    escape_local,
    is_canonical_escape,
    parse_jid,
    unescape_local,
)

# XEP-0106 §5.1 table "Native JIDs": user input -> escaped localpart (examples 1-12).
XEP0106_NATIVE = [
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
]

# XEP-0106 §5.2-§5.7: e-mail/mailto/sip/im/pres (the decoded forms), IMPS, IRC.
XEP0106_FOREIGN = [
    ("here's_a_wild_&_/cr%zy/_address", r"here\27s_a_wild_\26_\2fcr%zy\2f_address"),
    (
        'here\'s_a_wild_&_/cr%zy/_address_for:<wv>("IMPS")',
        r"here\27s_a_wild_\26_\2fcr%zy\2f_address_for\3a\3cwv\3e(\22IMPS\22)",
    ),
    (r"\3and\2is\5cool", r"\5c3and\2is\5c5cool"),
    ("somenick!user\"&'/:<>\\3address", r"somenick!user\22\26\27\2f\3a\3c\3e\5c3address"),
]


@pytest.mark.parametrize(("unescaped", "escaped"), XEP0106_NATIVE + XEP0106_FOREIGN)
def test_xep0106_examples_escape_and_unescape(unescaped: str, escaped: str) -> None:
    assert escape_local(unescaped) == escaped
    assert unescape_local(escaped) == unescaped


@pytest.mark.parametrize("text", [r"\2plus\2is\4", r"foo\bar", r"foob\41r"])
def test_xep0106_partial_and_unknown_sequences_are_left_alone(text: str) -> None:
    # XEP-0106 §4.3: "is not modified by escaping or unescaping transformations"
    assert escape_local(text) == text
    assert unescape_local(text) == text


def test_case_is_significant() -> None:
    # XEP-0106 §3: lowercase only; "\3A" is not an escape sequence in either direction.
    assert unescape_local(r"a\3Ab") == r"a\3Ab"
    assert escape_local(r"a\3Ab") == r"a\3Ab"
    assert escape_local(r"a\3ab") == r"a\5c3ab"


def test_unescape_does_not_rescan() -> None:
    assert unescape_local(r"\5c5c") == r"\5c"
    assert unescape_local(r"\5c27") == r"\27"


@pytest.mark.parametrize("text", [" lead", "trail ", " ", ""])
def test_leading_or_trailing_space_cannot_be_escaped(text: str) -> None:
    with pytest.raises(JidError) as info:
        escape_local(text)
    assert info.value.xmpp_condition == "jid-malformed"
    assert info.value.sip_status == 400


@pytest.mark.parametrize("text", ["tab\there", "nbsp\u00a0x", "ctl\x00"])
def test_escaping_refuses_characters_precis_refuses(text: str) -> None:
    with pytest.raises(JidError):
        escape_local(text)


@pytest.mark.parametrize(
    ("local", "canonical"),
    [
        (r"d\27artagnan", True),
        (r"foo\bar", True),
        (r"a\5cb", False),  # unescapes to a\b, which escapes back to a\b
        (r"\20x", False),  # unescapes to a leading space
        (r"x\20", False),
    ],
)
def test_is_canonical_escape(local: str, canonical: bool) -> None:
    assert is_canonical_escape(local) is canonical


# --- parse_jid / Jid (RFC 7622) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "local", "domain", "resource"),
    [
        ("juliet@example.com", "juliet", "example.com", None),
        ("juliet@example.com/foo", "juliet", "example.com", "foo"),
        ("juliet@example.com/foo bar", "juliet", "example.com", "foo bar"),
        ("juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar"),
        ("juliet@example.com/a/b", "juliet", "example.com", "a/b"),
        ("example.com", None, "example.com", None),
        ("example.com/foobar", None, "example.com", "foobar"),
        ("a.example.com/b@example.net", None, "a.example.com", "b@example.net"),
        ("fü@sip.example", "fü", "sip.example", None),
        ("juliet@example.com.", "juliet", "example.com", None),  # RFC 7622 §3.2 trailing dot
        ("juliet@[::1]", "juliet", "[::1]", None),
        ("juliet@192.0.2.1", "juliet", "192.0.2.1", None),
        (r"d\27artagnan@musketeers.lit", r"d\27artagnan", "musketeers.lit", None),
    ],
)
def test_parse_valid_jids(text: str, local: str | None, domain: str, resource: str | None) -> None:
    jid = parse_jid(text)
    assert (jid.local, jid.domain, jid.resource) == (local, domain, resource)
    assert str(jid) == text.replace("com.", "com")


@pytest.mark.parametrize(
    "text",
    [
        "",  # RFC 7622 §3.2: domainpart required
        "@example.com",  # empty localpart
        "juliet@",  # empty domainpart
        "juliet@example.com/",  # empty resourcepart
        "jul iet@example.com",  # space in localpart
        "jul'iet@example.com",
        'jul"iet@example.com',
        "jul&iet@example.com",
        "ju:liet@example.com",
        "ju<liet@example.com",
        "ju>liet@example.com",
        "a@b@example.com",  # "@" in the domainpart
        "juliet@exa mple.com",
        "juliet@example..com",
        "juliet@[not-ipv6]",
        "juliet@example.com/a\x07b",  # control in resource
        "jul\u200biet@example.com",  # format char (Cf)
        "x" * 1024 + "@example.com",  # 1024 octets
        "é" * 512 + "@example.com",  # 1024 octets of UTF-8
        "juliet@example.com/" + "r" * 1024,
    ],
)
def test_parse_invalid_jids(text: str) -> None:
    with pytest.raises(JidError) as info:
        parse_jid(text)
    assert isinstance(info.value, MappingError)
    assert info.value.xmpp_condition == "jid-malformed"


def test_length_limits_are_octets() -> None:
    assert parse_jid("x" * 1023 + "@example.com").local == "x" * 1023
    assert Jid("é" * 511, "example.com").local == "é" * 511
    assert Jid("a", "example.com", "r" * 1023).resource == "r" * 1023


def test_domain_compares_case_insensitively_other_parts_exactly() -> None:
    assert parse_jid("juliet@Example.COM/Balcony") == parse_jid("juliet@example.com/Balcony")
    assert hash(parse_jid("a@EXAMPLE.com")) == hash(parse_jid("a@example.com"))
    assert str(parse_jid("juliet@Example.COM")) == "juliet@Example.COM"  # case preserved
    assert parse_jid("Juliet@example.com") != parse_jid("juliet@example.com")
    assert parse_jid("a@example.com/R") != parse_jid("a@example.com/r")
    assert parse_jid("a@Example.com").same_domain("EXAMPLE.COM.")


def test_bare_and_with_resource() -> None:
    full = parse_jid("juliet@example.com/balcony")
    assert full.is_full and not full.bare.is_full
    assert full.bare == parse_jid("juliet@example.com")
    assert full.bare.with_resource("balcony") == full


def test_invalid_jid_cannot_be_built() -> None:
    with pytest.raises(JidError):
        Jid("a/b", "example.com")
    with pytest.raises(JidError):
        Jid(None, "")


# --- properties ---------------------------------------------------------------------------------

_char = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"),
)
# Tokens mixing ordinary characters, the disallowed ones and escape look-alikes.
_token = _char | st.sampled_from([*"\"&'/:<>@\\ ", r"\27", r"\5c", r"\20", r"\3A", r"\2"])
_local_text = (
    st.lists(_token, min_size=1, max_size=30)
    .map("".join)
    .filter(lambda s: s[0] != " " and s[-1] != " " and len(s.encode()) <= 300)
)


@settings(max_examples=200)
@given(_local_text)
def test_escape_then_unescape_is_identity(text: str) -> None:
    escaped = escape_local(text)
    assert unescape_local(escaped) == text
    assert is_canonical_escape(escaped)
    Jid(escaped, "example.com")  # always a valid localpart


@settings(max_examples=200)
@given(_local_text)
def test_str_and_parse_round_trip(text: str) -> None:
    jid = Jid(escape_local(text), "example.com", "res/ource")
    assert parse_jid(str(jid)) == jid
