"""The endpoint's memoized IP-literal check (`_address_of`, now also used for the source of
every received request) gives what `ua.ip_literal` gives, first time and remembered."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.ua import ip_literal
from gateway.sip.useragent import address_of as _address_of

_hosts = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.sampled_from(["::ffff:127.0.0.1", "[::1]", "[::1", "127.0.0.01", "example.com", "", "[]"]),
    st.text(alphabet="0123456789abcdef.:[]%", max_size=12),
)


@given(st.lists(_hosts, min_size=1, max_size=10))
@settings(max_examples=200, deadline=None)
def test_memo_matches_ip_literal(hosts: list[str]) -> None:
    for host in hosts + hosts:
        assert _address_of(host) == ip_literal(host)


def test_source_is_normalised_like_before() -> None:
    assert _address_of("[::1]") == "::1"
    assert _address_of("0:0::1") == str(ipaddress.ip_address("::1"))
    assert _address_of("host.example") is None
