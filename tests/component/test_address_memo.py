"""Remembered SIP -> XMPP address mappings (issue 11) answer exactly as the mappings do.

`sip_message.uri_address` and `pager.JidMemo` remember successful mappings by their input;
over random URIs (valid, malformed, sips:, tel:, gr, percent-encoding, case) every call,
first or repeated, must return what the original code returns or raise the same error
(type, text, SIP status, XMPP condition).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.bridge.pager import sip_message as sm
from gateway.bridge.pager.service import JidMemo
from mappings.addresses import (
    AddressError,
    AddressingMode,
    DomainMap,
    parse_address,
    sip_target_to_jid,
    sip_user_to_jid,
)
from mappings.errors import MappingError
from mappings.model import Address


def _original_uri_address(text: str) -> Address:
    """sip_message before the memo (`recipient_address` / `_address_of`)."""
    sip = parse_address(text)
    if sip.scheme == "sips":
        raise AddressError("sips: is never gatewayed to XMPP (RFC 7247 §8)", 403, "forbidden")
    return sip.address


def _outcome(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    try:
        return ("ok", fn(*args, **kwargs))
    except MappingError as exc:
        return ("error", type(exc), str(exc), exc.sip_status, exc.xmpp_condition)
    except ValueError as exc:
        return ("value-error", type(exc), str(exc))


USERS = ["juliet", "Juliet", "j%40x", "a%2Fb", "rom%C3%A9o", "", "x y", "%ZZ", "+14155550100"]
HOSTS = ["xmpp.example", "XMPP.Example.", "sip.localhost", "localhost", "[::1]", "bad_host", ""]
SCHEMES = ["sip", "sips", "tel", "im", "pres", "SIP", "http"]

_uris = st.builds(
    lambda scheme, user, host, port, gr: (
        f"{scheme}:"
        + (f"{user}@" if user is not None else "")
        + host
        + (f":{port}" if port else "")
        + (f";gr={gr}" if gr else "")
    ),
    st.sampled_from(SCHEMES),
    st.one_of(st.none(), st.sampled_from(USERS)),
    st.sampled_from(HOSTS),
    st.sampled_from([None, 5060, 99999]),
    st.sampled_from([None, "", "urn:uuid:1", "dev%201"]),
)
_maps = st.sampled_from(
    [
        DomainMap("sip.localhost", AddressingMode.MIRRORED, frozenset({"xmpp.example"})),
        DomainMap(
            "sip.localhost", AddressingMode.ESCAPED, frozenset({"xmpp.example", "localhost"})
        ),
        DomainMap("gw.xmpp.example", AddressingMode.ESCAPED),
    ]
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(_uris, min_size=1, max_size=6))
def test_uri_address_equals_the_original(texts: list[str]) -> None:
    sm._ADDRESSES.clear()
    for text in texts + texts:
        assert _outcome(sm.uri_address, text) == _outcome(_original_uri_address, text), text


@settings(max_examples=200, deadline=None)
@given(calls=st.lists(st.tuples(_uris, _maps), min_size=1, max_size=6))
@example(  # found by Hypothesis: Address compares domains case-insensitively
    calls=[
        ("sip:juliet@xmpp.example", DomainMap("gw.xmpp.example", AddressingMode.ESCAPED)),
        ("sip:juliet@XMPP.Example.", DomainMap("gw.xmpp.example", AddressingMode.ESCAPED)),
        ("sip:juliet@XMPP.Example", DomainMap("gw.xmpp.example", AddressingMode.ESCAPED)),
    ]
)
def test_jid_memo_equals_the_mappings(calls: list[tuple[str, DomainMap]]) -> None:
    memo = JidMemo(limit=3)  # small: forgetting is exercised too
    for text, dmap in calls + calls:
        expected = _outcome(sip_target_to_jid, text, domain_map=dmap)
        assert _outcome(memo.target, text, dmap) == expected, text
        try:
            address = _original_uri_address(text)
        except MappingError:
            continue
        expected = _outcome(sip_user_to_jid, address, dmap)
        assert _outcome(memo.user, address, dmap) == expected, address


def test_the_memo_is_bounded() -> None:
    sm._ADDRESSES.clear()
    for i in range(sm._ADDRESSES_LIMIT + 10):
        sm.uri_address(f"sip:u{i}@xmpp.example")
    assert len(sm._ADDRESSES) <= sm._ADDRESSES_LIMIT
