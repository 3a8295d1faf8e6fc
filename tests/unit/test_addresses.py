"""Address mapping: RFC 7247 §6.4/§6.5 vectors, XEP-0106 examples, addressing modes, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.uri import SipUri, parse_uri
from mappings.addresses import (
    AddressError,
    AddressingMode,
    DomainMap,
    SipAddress,
    address_to_uri,
    jid_to_sip_target,
    jid_to_sip_uri,
    parse_address,
    percent_decode,
    sip_address,
    sip_target_to_jid,
    sip_uri_to_jid,
)
from mappings.errors import MappingError
from mappings.jid import Jid, escape_local, parse_jid
from mappings.model import Address

GW = DomainMap("gw.example.org", AddressingMode.ESCAPED)
GW_SERVING = DomainMap("gw.example.org", AddressingMode.ESCAPED, frozenset({"xmpp.example"}))


def mirrored(domain: str) -> DomainMap:
    return DomainMap(domain, AddressingMode.MIRRORED)


# --- RFC 7247 §6.4 / §6.5 worked examples (DIGEST §1.2) ----------------------------------------

SIP_TO_XMPP_VECTORS = [
    ("sip:f%C3%BC@sip.example", "fü@sip.example"),
    ("sip:o'malley@sip.example", r"o\27malley@sip.example"),
    ("sip:foo@sip.example;gr=bar", "foo@sip.example/bar"),
]
XMPP_TO_SIP_VECTORS = [
    (r"m\26m@xmpp.example", "sip:m&m@xmpp.example"),
    ("tschüss@xmpp.example", "sip:tsch%C3%BCss@xmpp.example"),
    ("baz@xmpp.example/qux", "sip:baz@xmpp.example;gr=qux"),
]


@pytest.mark.parametrize(("uri", "jid"), SIP_TO_XMPP_VECTORS)
def test_rfc7247_6_4_examples_as_sip_users_mirrored(uri: str, jid: str) -> None:
    assert sip_uri_to_jid(uri, domain_map=mirrored("sip.example")) == parse_jid(jid)


@pytest.mark.parametrize(("uri", "jid"), SIP_TO_XMPP_VECTORS)
def test_rfc7247_6_4_examples_as_xmpp_targets(uri: str, jid: str) -> None:
    assert sip_target_to_jid(uri, domain_map=GW) == parse_jid(jid)


@pytest.mark.parametrize(("jid", "uri"), XMPP_TO_SIP_VECTORS)
def test_rfc7247_6_5_examples_as_xmpp_users(jid: str, uri: str) -> None:
    assert str(jid_to_sip_uri(parse_jid(jid), domain_map=GW)) == uri


@pytest.mark.parametrize(("jid", "uri"), XMPP_TO_SIP_VECTORS)
def test_rfc7247_6_5_examples_as_sip_targets_mirrored(jid: str, uri: str) -> None:
    target = jid_to_sip_target(parse_jid(jid), domain_map=mirrored("xmpp.example"))
    assert str(target) == uri


@pytest.mark.parametrize(("uri", "jid"), SIP_TO_XMPP_VECTORS)
def test_rfc7247_examples_round_trip(uri: str, jid: str) -> None:
    dm = mirrored("sip.example")
    assert str(jid_to_sip_target(parse_jid(jid), domain_map=dm)) == uri
    assert str(jid_to_sip_uri(parse_jid(jid), domain_map=GW)) == uri


# --- XEP-0106 §5.3/§5.4 (sip:, im:, pres:) -----------------------------------------------------

XEP_JID = r"here\27s_a_wild_\26_\2fcr%zy\2f_address@example.com"


@pytest.mark.parametrize("scheme", ["sip", "im", "pres"])
def test_xep0106_cr_zy_example_is_rejected_by_a_strict_decoder(scheme: str) -> None:
    # XEP-0106's "%zy" is not an RFC 3986 escape (DIGEST §0): negative vector.
    uri = f"{scheme}:here%27s_a_wild_%26_%2Fcr%zy%2F_address@example.com"
    with pytest.raises(AddressError) as info:
        sip_target_to_jid(uri, domain_map=GW)
    assert (info.value.sip_status, info.value.xmpp_condition) == (400, "jid-malformed")


@pytest.mark.parametrize("scheme", ["sip", "im", "pres"])
def test_xep0106_example_with_a_valid_escape_maps_to_the_xep_jid(scheme: str) -> None:
    uri = f"{scheme}:here%27s_a_wild_%26_%2Fcr%25zy%2F_address@example.com"
    assert sip_target_to_jid(uri, domain_map=GW) == parse_jid(XEP_JID)


def test_xep0106_example_back_to_sip_emits_rfc7247_form_equal_when_decoded() -> None:
    sip = jid_to_sip_uri(parse_jid(XEP_JID), domain_map=GW)
    # RFC 7247 leaves & ' / literal; XEP-0106 percent-encodes them: equal once decoded.
    assert str(sip) == "sip:here's_a_wild_&_/cr%25zy/_address@example.com"
    xep_form = parse_address("sip:here%27s_a_wild_%26_%2Fcr%25zy%2F_address@example.com")
    assert sip == xep_form
    assert sip.user == "here's_a_wild_&_/cr%zy/_address"


def test_xep0106_im_and_pres_forms() -> None:
    jid = parse_jid(XEP_JID)
    assert str(jid_to_sip_uri(jid, domain_map=GW, scheme="pres")) == (
        "pres:here's_a_wild_&_/cr%25zy/_address@example.com"
    )
    assert str(jid_to_sip_uri(jid, domain_map=GW, scheme="im")).startswith("im:here's_a_wild")


# --- RFC 7247 §6.2 Table 1 characters, both directions (DIGEST §1.4) ---------------------------

TABLE_1_CHARS = [*"%#[\\]^`{|}&'/@:\"<> ", "ü", "€", "日"]


@pytest.mark.parametrize("ch", TABLE_1_CHARS)
def test_table_1_characters_round_trip_through_escaped_jids(ch: str) -> None:
    user = f"a{ch}b"
    sip = SipAddress("sip", user, "example.com")
    jid = sip_uri_to_jid(str(sip), domain_map=GW)
    assert jid.local == escape_local(f"{user}@example.com")
    back = jid_to_sip_target(jid, domain_map=GW)
    assert back == sip
    assert parse_address(str(back)) == sip


@pytest.mark.parametrize("ch", TABLE_1_CHARS)
@pytest.mark.parametrize("scheme", ["sip", "im", "pres"])
def test_table_1_characters_round_trip_for_xmpp_users(ch: str, scheme: str) -> None:
    jid = Jid(escape_local(f"a{ch}b"), "xmpp.example")
    uri = jid_to_sip_uri(jid, domain_map=GW, scheme=scheme)  # type: ignore[arg-type]
    assert sip_target_to_jid(str(uri), domain_map=GW) == jid


@pytest.mark.parametrize(
    ("user", "encoded"),
    [
        ("a#b", "a%23b"),
        ("a%b", "a%25b"),
        ("a[b]", "a%5Bb%5D"),
        ("a\\b", "a%5Cb"),
        ("a^`{|}", "a%5E%60%7B%7C%7D"),
        ("a@b:c", "a%40b%3Ac"),
        ('"<x>"', "%22%3Cx%3E%22"),
        ("a b", "a%20b"),
        ("m&m'/;?=+$,!~*()._-", "m&m'/;?=+$,!~*()._-"),  # RFC 3261 user chars stay literal
    ],
)
def test_rfc7247_6_5_sip_percent_encoding_set(user: str, encoded: str) -> None:
    assert str(SipAddress("sip", user, "example.com")) == f"sip:{encoded}@example.com"


@pytest.mark.parametrize(
    ("user", "encoded"),
    [
        ("a(b),c;d", "a%28b%29%2Cc%3Bd"),
        ("[\\]", "%5B%5C%5D"),
        ("first.last", "first.last"),  # dot-atom-text
        (".lead", "%2Elead"),
        ("a..b", "a%2E%2Eb"),
        ("ü", "%C3%BC"),
        ("a?b#c%d", "a%3Fb%23c%25d"),  # URI delimiters (design note)
        ("m&m'/=^_`{|}~!$*+-", "m&m'/=^_`{|}~!$*+-"),
    ],
)
def test_rfc7247_6_5_im_pres_percent_encoding_set(user: str, encoded: str) -> None:
    assert str(SipAddress("im", user, "example.com")) == f"im:{encoded}@example.com"
    assert parse_address(f"im:{encoded}@example.com").user == user


# --- addressing modes ---------------------------------------------------------------------------


def test_escaped_mode_sip_user_lives_under_the_gateway() -> None:
    jid = sip_uri_to_jid("sip:romeo@example.com", domain_map=GW)
    assert str(jid) == r"romeo\40example.com@gw.example.org"
    assert str(jid_to_sip_target(jid, domain_map=GW)) == "sip:romeo@example.com"


def test_escaped_mode_with_an_at_sign_in_the_user_part() -> None:
    jid = sip_uri_to_jid("sip:a%40b@example.com;gr=dev1", domain_map=GW)
    assert str(jid) == r"a\40b\40example.com@gw.example.org/dev1"
    assert str(jid_to_sip_target(jid, domain_map=GW)) == "sip:a%40b@example.com;gr=dev1"


def test_mirrored_mode_sip_user_keeps_its_domain() -> None:
    dm = mirrored("sip.example.org")
    jid = sip_uri_to_jid("sip:romeo@SIP.example.org", domain_map=dm)
    assert str(jid) == "romeo@sip.example.org"
    assert str(jid_to_sip_target(jid, domain_map=dm)) == "sip:romeo@sip.example.org"


def test_mirrored_mode_refuses_a_foreign_sip_domain() -> None:
    with pytest.raises(AddressError) as info:
        sip_uri_to_jid("sip:romeo@other.example", domain_map=mirrored("sip.example.org"))
    assert (info.value.sip_status, info.value.xmpp_condition) == (403, "forbidden")


def test_xmpp_users_map_the_same_in_both_modes() -> None:
    jid = parse_jid("juliet@xmpp.example/balcony")
    for dm in (GW, mirrored("sip.example.org")):
        sip = jid_to_sip_uri(jid, domain_map=dm)
        assert sip.name_addr() == "<sip:juliet@xmpp.example;gr=balcony>"  # gr inside <>
        assert sip_target_to_jid(str(sip), domain_map=dm) == jid


def test_escaped_target_that_names_no_sip_address() -> None:
    with pytest.raises(AddressError) as info:
        jid_to_sip_target(parse_jid("romeo@gw.example.org"), domain_map=GW)
    assert (info.value.sip_status, info.value.xmpp_condition) == (404, "item-not-found")


# --- GRUU / resource (RFC 7247 §6.3, RFC 5627) ------------------------------------------------


def test_gr_passed_separately_as_on_the_wire() -> None:
    # RFC 8048 examples put gr outside <>: the caller hands it over.
    jid = sip_target_to_jid("sip:juliet@xmpp.example", gruu="caf%C3%A9", domain_map=GW)
    assert jid == parse_jid("juliet@xmpp.example/café")
    assert str(jid_to_sip_uri(jid, domain_map=GW)) == "sip:juliet@xmpp.example;gr=caf%C3%A9"


def test_gr_inside_and_outside_must_agree() -> None:
    ok = sip_target_to_jid("sip:j@xmpp.example;gr=a", gruu="a", domain_map=GW)
    assert ok.resource == "a"
    with pytest.raises(AddressError):
        sip_target_to_jid("sip:j@xmpp.example;gr=a", gruu="b", domain_map=GW)


def test_gr_without_value_is_a_temporary_gruu_marker_not_an_instance() -> None:
    jid = sip_uri_to_jid(
        "sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr", domain_map=GW
    )
    assert jid.resource is None


def test_gr_is_dropped_for_im_and_pres() -> None:
    jid = parse_jid("juliet@xmpp.example/balcony")
    assert str(jid_to_sip_uri(jid, domain_map=GW, scheme="im")) == "im:juliet@xmpp.example"


def test_gr_value_special_characters_are_encoded() -> None:
    sip = SipAddress("sip", "a", "example.com", gr="x;y=z ü")
    assert str(sip) == "sip:a@example.com;gr=x%3By%3Dz%20%C3%BC"
    assert parse_address(str(sip)).gr == "x;y=z ü"


# --- telephone numbers ------------------------------------------------------------------------


def test_tel_uri_keeps_plus_and_digits() -> None:
    jid = sip_uri_to_jid("tel:+1-555-123-4567", domain_map=GW)
    assert str(jid) == "+15551234567@gw.example.org"
    assert str(jid_to_sip_target(jid, domain_map=GW)) == "tel:+15551234567"


def test_sip_user_phone_is_normalised_and_restored() -> None:
    dm = mirrored("sip.example")
    jid = sip_uri_to_jid("sip:+1-555-123-4567@sip.example;user=phone", domain_map=dm)
    assert str(jid) == "+15551234567@sip.example"
    assert str(jid_to_sip_target(jid, domain_map=dm)) == "sip:+15551234567@sip.example;user=phone"
    escaped = sip_uri_to_jid("sip:+1(555)1234567@example.com;user=phone", domain_map=GW)
    assert str(escaped) == r"+15551234567\40example.com@gw.example.org"


def test_tel_in_mirrored_mode_lands_at_the_component_domain() -> None:
    jid = sip_uri_to_jid("tel:+4930123", domain_map=mirrored("sip.example"))
    assert str(jid) == "+4930123@sip.example"


def test_local_tel_number_is_refused_as_incomplete() -> None:
    with pytest.raises(AddressError) as info:
        sip_uri_to_jid("tel:7042;phone-context=example.com", domain_map=GW)
    assert (info.value.sip_status, info.value.xmpp_condition) == (484, "item-not-found")


# --- parsing details --------------------------------------------------------------------------


def test_port_params_and_headers_are_not_identity() -> None:
    jid = sip_target_to_jid(
        "sip:juliet@xmpp.example:5060;transport=tcp;lr?Subject=hi", domain_map=GW
    )
    assert jid == parse_jid("juliet@xmpp.example")
    assert parse_address("sip:juliet@xmpp.example:5060").port == 5060


def test_case_is_preserved_and_domain_matching_is_case_insensitive() -> None:
    jid = sip_target_to_jid("SIP:Juliet@XMPP.example", domain_map=GW_SERVING)
    assert (jid.local, jid.domain) == ("Juliet", "XMPP.example")


def test_im_and_pres_uris_drop_headers() -> None:
    assert sip_target_to_jid("im:fred@xmpp.example?subject=hi", domain_map=GW) == parse_jid(
        "fred@xmpp.example"
    )
    assert sip_target_to_jid("pres:fred@xmpp.example", domain_map=GW).local == "fred"


def test_xmpp_uri_as_a_target() -> None:
    jid = sip_target_to_jid("xmpp:d%5C27artagnan@xmpp.example/gate", domain_map=GW)
    assert jid == parse_jid(r"d\27artagnan@xmpp.example/gate")


def test_ipv6_and_ipv4_hosts() -> None:
    assert parse_address("sip:a@[2001:db8::1]:5061").host == "[2001:db8::1]"
    assert parse_address("sip:a@192.0.2.1").host == "192.0.2.1"


def test_percent_decode_is_strict() -> None:
    assert percent_decode("f%C3%BC") == "fü"
    for bad in ("%", "%z1", "%C3", "%FF"):
        with pytest.raises(AddressError):
            percent_decode(bad)


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "sips:juliet@xmpp.example",  # RFC 7247 §8 (R7247-06): MUST NOT translate
        "SIPS:juliet@xmpp.example;gr=x",
    ],
)
def test_sips_is_never_translated_to_xmpp(uri: str) -> None:
    for convert in (sip_target_to_jid, sip_uri_to_jid):
        with pytest.raises(AddressError) as info:
            convert(uri, domain_map=GW)
        assert (info.value.sip_status, info.value.xmpp_condition) == (403, "forbidden")


def test_sips_may_be_emitted_towards_sip() -> None:
    jid = parse_jid("juliet@xmpp.example")
    assert str(jid_to_sip_uri(jid, domain_map=GW, scheme="sips")) == "sips:juliet@xmpp.example"


@pytest.mark.parametrize("uri", ["mailto:a@b.example", "http://b.example/", "h323:a@b.example"])
def test_unknown_scheme_is_416(uri: str) -> None:
    with pytest.raises(AddressError) as info:
        sip_target_to_jid(uri, domain_map=GW)
    assert (info.value.sip_status, info.value.xmpp_condition) == (416, "jid-malformed")


def test_scheme_that_does_not_fit_the_direction_is_416() -> None:
    with pytest.raises(AddressError) as info:
        sip_target_to_jid("tel:+15551234567", domain_map=GW)  # a number is no XMPP user
    assert info.value.sip_status == 416
    with pytest.raises(AddressError) as info:
        sip_uri_to_jid("xmpp:a@xmpp.example", domain_map=GW)  # an XMPP user is no SIP user
    assert info.value.sip_status == 416


@pytest.mark.parametrize(
    "uri",
    [
        "sip:",
        "sip:@example.com",
        "sip:a b@example.com",
        "sip:a%zz@example.com",
        "sip:%FF@example.com",  # not UTF-8
        "sip:%20lead@example.com",  # XEP-0106: leading space cannot be escaped
        "sip:tab%09@example.com",  # control character
        "sip:user:secret@example.com",  # password
        "sip:a@-bad-.example",
        "sip:a@exa_mple.com",
        "sip:a@[zz::1]",
        "sip:a@999.1.1.1",
        "sip:a@example.com:99999",
        "sip:a@example.com;gr=x;=y",
        "im:a b@example.com",
        "im:a@",
        "tel:",
        "tel:+",
        "xmpp:a\\5cb@xmpp.example",  # not a canonical XEP-0106 localpart
    ],
)
def test_malformed_addresses_are_400(uri: str) -> None:
    with pytest.raises(AddressError) as info:
        sip_target_to_jid(uri, domain_map=GW) if uri.startswith("xmpp") else sip_uri_to_jid(
            uri, domain_map=GW
        )
    assert isinstance(info.value, MappingError)
    assert (info.value.sip_status, info.value.xmpp_condition) == (400, "jid-malformed")


def test_target_outside_the_served_domains_is_404() -> None:
    with pytest.raises(AddressError) as info:
        sip_target_to_jid("sip:juliet@elsewhere.example", domain_map=GW_SERVING)
    assert (info.value.sip_status, info.value.xmpp_condition) == (404, "item-not-found")
    with pytest.raises(AddressError) as info:  # the component's own domain loops back
        sip_target_to_jid("sip:juliet@gw.example.org", domain_map=GW)
    assert info.value.sip_status == 404


def test_xmpp_source_outside_the_served_domains_is_403() -> None:
    with pytest.raises(AddressError) as info:
        jid_to_sip_uri(parse_jid("mallory@elsewhere.example"), domain_map=GW_SERVING)
    assert (info.value.sip_status, info.value.xmpp_condition) == (403, "forbidden")


def test_non_canonical_xmpp_localpart_is_refused() -> None:
    with pytest.raises(AddressError) as info:
        jid_to_sip_uri(parse_jid(r"a\5cb@xmpp.example"), domain_map=GW)
    assert info.value.xmpp_condition == "jid-malformed"


def test_idn_domain_cannot_become_a_sip_host() -> None:
    with pytest.raises(AddressError) as info:
        jid_to_sip_uri(parse_jid("juliet@münchen.example"), domain_map=GW)
    assert info.value.sip_status == 400


def test_target_jid_not_at_the_component_is_404() -> None:
    with pytest.raises(AddressError) as info:
        jid_to_sip_target(parse_jid("juliet@xmpp.example"), domain_map=GW)
    assert (info.value.sip_status, info.value.xmpp_condition) == (404, "item-not-found")


def test_domain_map_validates() -> None:
    with pytest.raises(ValueError):
        DomainMap("bad domain", AddressingMode.MIRRORED)
    with pytest.raises(ValueError):
        DomainMap("gw.example", AddressingMode.ESCAPED, frozenset({"GW.example"}))


def test_address_to_uri_of_a_number_is_tel() -> None:
    assert str(address_to_uri(Address("+4930123", None))) == "tel:+4930123"


# --- properties: round trips on decoded values (DIGEST §0, §23.4) ------------------------------

_char = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"))
_token = _char | st.sampled_from([*"%#[\\]^`{|}&'/@:\"<>;?=.() ", r"\27", r"\5c", "%41"])
_user = (
    st.lists(_token, min_size=1, max_size=24)
    .map("".join)
    .filter(lambda s: s[0] != " " and s[-1] != " ")
)
_resource = st.none() | st.text(alphabet=_char | st.just(" "), min_size=1, max_size=12)
_label = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_host = st.lists(_label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "example"]))


@settings(max_examples=200)
@given(user=_user, resource=_resource, scheme=st.sampled_from(["sip", "im", "pres"]))
def test_xmpp_user_jid_to_sip_to_jid_is_identity(
    user: str, resource: str | None, scheme: str
) -> None:
    jid = Jid(escape_local(user), "xmpp.example", resource)
    uri = jid_to_sip_uri(jid, domain_map=GW, scheme=scheme)  # type: ignore[arg-type]
    expected = jid if scheme == "sip" else jid.bare  # im/pres carry no instance
    assert sip_target_to_jid(str(uri), domain_map=GW) == expected


@settings(max_examples=200)
@given(user=_user, host=_host, resource=_resource)
def test_sip_user_to_jid_to_sip_is_identity_on_decoded_values(
    user: str, host: str, resource: str | None
) -> None:
    sip = SipAddress("sip", user, host, gr=resource)
    for dm in (GW, mirrored(host)):
        jid = sip_uri_to_jid(str(sip), domain_map=dm)
        back = jid_to_sip_target(jid, domain_map=dm)
        assert back.address == sip.address
        assert sip_uri_to_jid(str(back), domain_map=dm) == jid


@settings(max_examples=200)
@given(user=_user, host=_host)
def test_rendered_uris_always_parse_back(user: str, host: str) -> None:
    for scheme in ("sip", "sips", "im", "pres"):
        sip = SipAddress(scheme, user, host)
        assert parse_address(str(sip)) == sip


# --- one URI grammar: sip/sips identities come from the SIP core's parse (issue 25) ----------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_escapes = st.sampled_from(["%41", "%20", "%C3%A9", "%3B", "%40", "%25"])
_users = st.lists(
    st.one_of(st.sampled_from(_ALNUM + "-_.!~*'()&=+$,;?/"), _escapes), min_size=1, max_size=12
).map("".join)
_labels = st.text(st.sampled_from("abcxyz019"), min_size=1, max_size=6)
_hosts = st.one_of(
    st.builds(
        lambda ls, top: ".".join([*ls, top]),
        st.lists(_labels, max_size=3),
        st.text(st.sampled_from("abcxyz"), min_size=1, max_size=4),
    ),
    st.sampled_from(["192.0.2.1", "[2001:db8::1]", "[::1]", "Example.COM", "example.org."]),
)
_pvalues = st.lists(
    st.one_of(st.sampled_from(_ALNUM + "-_.[]/:&+$"), _escapes), min_size=1, max_size=8
).map("".join)
_params = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["gr", "GR", "user", "transport", "lr", "x-y"]),
            st.one_of(st.none(), _pvalues),
        ),
        st.tuples(st.just("user"), st.sampled_from(["phone", "PHONE", "ip"])),
    ),
    max_size=4,
)
_headers = st.lists(
    st.tuples(st.sampled_from(["subject", "h"]), st.text(_ALNUM, max_size=5)), max_size=2
)


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP"]))
    user = draw(st.one_of(st.none(), _users, st.sampled_from(["+1-555-0123", "+1(555)0123"])))
    host = draw(_hosts)
    port = draw(st.one_of(st.none(), st.integers(0, 65535)))
    text = f"{scheme}:" + ("" if user is None else f"{user}@") + host
    text += "" if port is None else f":{port}"
    text += "".join(f";{n}" if v is None else f";{n}={v}" for n, v in draw(_params))
    headers = draw(_headers)
    return text + ("?" + "&".join(f"{n}={v}" for n, v in headers) if headers else "")


@settings(max_examples=300, deadline=None)
@given(sip_uris())
def test_identity_agrees_with_the_sip_core(text: str) -> None:
    """For generated sip: URIs the mapping reads what the core parsed: scheme, user (decoded,
    user=phone separators dropped), host, port, and the last gr / user parameter."""
    core = parse_uri(text)
    assert isinstance(core, SipUri)
    sip = parse_address(text)  # the generator makes only valid identities
    assert sip == sip_address(core)
    host = core.host if core.host.startswith("[") else core.host.rstrip(".")  # FQDN dot
    assert (sip.scheme, sip.host, sip.port) == (core.scheme, host, core.port)
    last = {n.lower(): v for n, v in core.params}
    assert sip.phone is ((last.get("user") or "").lower() == "phone")
    gr = last.get("gr")
    assert sip.gr == (None if not gr else percent_decode(gr))
    user = None if core.user is None else percent_decode(core.user)
    if sip.phone and user is not None and user.startswith("+"):
        user = user.translate(str.maketrans("", "", "-.()"))
    assert sip.user == user


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice:secret@example.com",  # RFC 3261 §19.1.1: passwords refused
        "sip:alice:@example.com",
        "sip:a@-a.com",  # not a hostname (core grammar)
        "sip:a@x.1",  # toplabel must start with a letter (mapping host check)
        "sip:a@256.1.1.1",  # not an IPv4 address (mapping host check)
        "sip:a@[1:2]",  # not an IPv6 address (mapping host check)
        "sip:a@example.com:65536",  # port out of range (core)
        "sip:a@example.com:99999",
        "sip:a@example.com;=x",  # bad uri-parameter (core)
        "sip:a%zz@example.com",  # bad escape (core)
        "sip:a%C3@example.com",  # not UTF-8 (mapping)
        "sip:a@example.com?",  # headers now follow the core grammar (header = hname "=" hvalue)
        "sip:a@example.com?subject",
    ],
)
def test_sip_refusals_are_400(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert (info.value.sip_status, info.value.xmpp_condition) == (400, "jid-malformed")


def test_sip_identity_ignores_other_params_and_headers() -> None:
    sip = parse_address("sip:Bob@Example.com:5070;transport=tcp;lr;gr=a%20b?subject=hi&h=x")
    assert sip == SipAddress("sip", "Bob", "Example.com", 5070, "a b")
    assert parse_address("sip:a@b.example;gr").gr is None  # temporary GRUU marker
    assert parse_address("sip:a@b.example;gr=x;gr=y").gr == "y"  # the last one, as before
    assert parse_address("sip:+1-555-0123@b.example;user=phone").user == "+15550123"
