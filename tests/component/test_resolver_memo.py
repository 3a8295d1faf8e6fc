"""Resolver: the targets of numeric URIs are remembered; the answers must not change.

A resolver that has seen a URI before answers `resolve_sip` / `locate` exactly as a fresh
resolver does (same targets or the same error type, kind and text), over random static
routes, outbound proxies and request URIs; a URI that needs DNS is never remembered.
"""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import DnsConfig, RouteConfig
from gateway.resolver.errors import ResolutionError
from gateway.resolver.resolver import Resolver
from gateway.sip.uri import SipUri, parse_uri

HOSTS = ["127.0.0.1", "192.0.2.7", "[::1]", "[2001:db8::5]", "sip.example.com", "example.net"]
TRANSPORTS = [None, "udp", "tcp", "tls", "sctp", "UDP"]


def _uri_text(
    scheme: str, host: str, port: int | None, transport: str | None, maddr: str | None
) -> str:
    text = f"{scheme}:bob@{host}" + (f":{port}" if port else "")
    if transport:
        text += f";transport={transport}"
    if maddr:
        text += f";maddr={maddr}"
    return text


_uris = st.builds(
    _uri_text,
    st.sampled_from(["sip", "sip", "sips"]),
    st.sampled_from(HOSTS),
    st.sampled_from([None, 5060, 5099]),
    st.sampled_from(TRANSPORTS),
    st.sampled_from([None, None, "127.0.0.2", "proxy.example.com"]),
)
_supported = st.sampled_from([("udp", "tcp"), ("udp",), ("tcp", "tls"), ("udp", "tcp", "tls")])


def _outcome(resolver: Resolver, uri: SipUri, supported: tuple[str, ...], how: str) -> object:
    async def go() -> object:
        try:
            if how == "locate":
                return await resolver.locate(uri, supported)  # type: ignore[arg-type]
            return await resolver.resolve_sip(uri, supported)  # type: ignore[arg-type]
        except ResolutionError as exc:
            return ("error", type(exc).__name__, exc.kind, str(exc))

    return asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(
    routes=st.lists(
        st.tuples(st.sampled_from(["a.example", "sip.example.com"]), _uris), max_size=2
    ),
    proxy=st.one_of(st.none(), _uris),
    calls=st.lists(
        st.tuples(_uris, _supported, st.sampled_from(["locate", "resolve"])), max_size=8
    ),
)
def test_remembered_targets_equal_fresh_ones(
    routes: list[tuple[str, str]],
    proxy: str | None,
    calls: list[tuple[str, tuple[str, ...], str]],
) -> None:
    route_cfg = [RouteConfig(d, t) for d, t in dict(routes).items()]
    try:
        memo = Resolver(DnsConfig(), route_cfg, proxy, rng=random.Random(1))
    except ValueError:
        return  # an unusable route or proxy is refused at start-up, memo or not
    for text, supported, how in calls + calls:  # every call twice: the second may be remembered
        uri = parse_uri(text)
        assert isinstance(uri, SipUri)
        fresh = Resolver(DnsConfig(), route_cfg, proxy, rng=random.Random(1))
        assert _outcome(memo, uri, supported, how) == _outcome(fresh, uri, supported, how)


def test_only_numeric_plans_are_remembered_and_copies_are_returned() -> None:
    r = Resolver(DnsConfig(), [RouteConfig("a.example", "sip:127.0.0.1:5070")])
    uri = parse_uri("sip:bob@a.example")
    assert isinstance(uri, SipUri)
    first = asyncio.run(r.resolve_sip(uri))
    first.clear()  # the caller's list is its own
    again = asyncio.run(r.resolve_sip(uri))
    assert [(t.transport, t.address, t.port) for t in again] == [("udp", "127.0.0.1", 5070)]
    assert len(r._numeric) == 1
    named = parse_uri("sip:bob@sip.example.com:5060")
    assert isinstance(named, SipUri)
    for _ in range(2):
        try:
            asyncio.run(r.locate(named))
        except ResolutionError as exc:
            assert exc.kind == "disabled"
    assert len(r._numeric) == 1
