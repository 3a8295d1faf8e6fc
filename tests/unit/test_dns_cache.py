"""gateway.resolver.cache (pure TTL/LRU cache) and the resolver's pure pieces: error mapping,
im:/pres: destination parsing, owner names; the failover driver with scripted sends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.failover import TargetsExhausted, send_with_failover
from gateway.resolver.cache import TtlCache
from gateway.resolver.errors import ResolutionError
from gateway.resolver.im_pres import candidates, parse_destination
from mappings.errors import MappingError

pytestmark = pytest.mark.unit


def test_hit_before_expiry_miss_at_expiry() -> None:
    c: TtlCache[str, int] = TtlCache(10)
    assert c.put("a", 1, ttl=5, now=100.0)
    assert c.get("a", 104.999) == 1
    assert c.remaining("a", 104.0) == pytest.approx(1.0)
    assert c.get("a", 105.0) is None  # RFC 1035: the TTL is the validity interval
    assert c.stats.hits == 1 and c.stats.misses == 1 and c.stats.expired == 1
    assert len(c) == 0  # the expired entry was dropped


def test_zero_ttl_is_not_cached_and_replaces_an_old_entry() -> None:
    c: TtlCache[str, int] = TtlCache(10)
    c.put("a", 1, ttl=60, now=0.0)
    assert not c.put("a", 2, ttl=0, now=1.0)
    assert c.get("a", 1.0) is None


def test_negative_ttl_clamped_separately() -> None:
    c: TtlCache[str, str] = TtlCache(10, max_ttl=1000, max_negative_ttl=10)
    c.put("pos", "p", ttl=500, now=0.0)
    c.put("neg", "n", ttl=500, now=0.0, negative=True)
    assert c.get("pos", 499.0) == "p"
    assert c.get("neg", 9.9) == "n"
    assert c.get("neg", 10.0) is None
    c.put("big", "b", ttl=10**9, now=0.0)
    assert c.get("big", 1000.0) is None


def test_lru_eviction_keeps_recently_used() -> None:
    c: TtlCache[str, int] = TtlCache(2)
    c.put("a", 1, 60, 0.0)
    c.put("b", 2, 60, 0.0)
    assert c.get("a", 1.0) == 1  # a is now the most recent
    c.put("c", 3, 60, 2.0)
    assert c.get("b", 2.0) is None
    assert c.get("a", 2.0) == 1 and c.get("c", 2.0) == 3
    assert c.stats.evicted == 1


def test_size_zero_caches_nothing() -> None:
    c: TtlCache[str, int] = TtlCache(0)
    assert not c.put("a", 1, 60, 0.0)
    assert c.get("a", 0.0) is None


def test_purge_drops_only_expired() -> None:
    c: TtlCache[str, int] = TtlCache(10)
    c.put("short", 1, 1, 0.0)
    c.put("long", 2, 100, 0.0)
    assert c.purge(50.0) == 1
    assert len(c) == 1 and c.get("long", 50.0) == 2


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError):
        TtlCache(-1)


@settings(max_examples=200)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from("abcdef"),
            st.integers(min_value=0, max_value=50),  # ttl
            st.integers(min_value=0, max_value=10),  # time step
        ),
        max_size=60,
    ),
    size=st.integers(min_value=1, max_value=4),
)
def test_never_serves_expired_and_never_exceeds_size(
    ops: list[tuple[str, int, int]], size: int
) -> None:
    c: TtlCache[str, int] = TtlCache(size)
    model: dict[str, tuple[int, float]] = {}  # key -> (value, expires)
    now = 0.0
    for i, (key, ttl, step) in enumerate(ops):
        now += step
        got = c.get(key, now)
        if got is not None:  # anything served is the last value put, and still live
            value, expires = model[key]
            assert got == value and now < expires
        c.put(key, i, ttl, now)
        model[key] = (i, now + ttl)
        assert len(c) <= size


# -- error mapping (docs/dns.md) ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "condition", "transient"),
    [
        ("not-found", 404, "remote-server-not-found", False),
        ("disabled", 404, "remote-server-not-found", False),
        ("unusable", 416, "remote-server-not-found", False),
        ("timeout", 504, "remote-server-timeout", True),
        ("server-failure", 503, "remote-server-timeout", True),
    ],
)
def test_resolution_error_mapping(kind: str, status: int, condition: str, transient: bool) -> None:
    err = ResolutionError(kind, "why")  # type: ignore[arg-type]
    assert isinstance(err, MappingError)
    assert (err.sip_status, err.xmpp_condition, err.transient) == (status, condition, transient)
    assert err.to_xmpp().text == "why"


# -- RFC 3861 destinations and owner names ----------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "domain"),
    [
        ("im:fred@example.com", "im", "example.com"),
        ("pres:fred@Example.COM.", "pres", "example.com"),
        ("im:fred@example.com?subject=hi", "im", "example.com"),
        ("example.org", "im", "example.org"),
    ],
)
def test_parse_destination(text: str, kind: str, domain: str) -> None:
    assert parse_destination(text) == (kind, domain)


@pytest.mark.parametrize(
    "text", ["im:fred@localhost", "im:fred@192.0.2.1", "xmpp:fred@example.com", "exa mple.com"]
)
def test_parse_destination_rejects_non_fqdn(text: str) -> None:
    with pytest.raises(ResolutionError) as info:
        parse_destination(text)
    assert info.value.kind == "unusable"


def test_parse_destination_kind_mismatch() -> None:
    with pytest.raises(ResolutionError):
        parse_destination("im:fred@example.com", "pres")


def test_owner_names_in_preference_order() -> None:
    # RFC 3861 §3 name first, transport-labelled variants next, RFC 6121's dropped _xmpp last.
    assert [(n, p, t) for n, p, t in candidates("pres", "example.com")] == [
        ("_pres._sip.example.com", "sip", None),
        ("_pres._sip._udp.example.com", "sip", "udp"),
        ("_pres._sip._tcp.example.com", "sip", "tcp"),
        ("_pres._xmpp.example.com", "xmpp", None),
    ]


# -- the RFC 3263 §4.3 failover driver with scripted sends (no sockets) ----------------


class _Resp:
    def __init__(self, status: int) -> None:
        self.status = status


def _script(outcomes: dict[str, object]) -> tuple[list[str], Any]:
    calls: list[str] = []

    async def send(target: str) -> _Resp:
        calls.append(target)
        outcome = outcomes[target]
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, int)
        return _Resp(outcome)

    return calls, send


async def test_failover_tries_next_on_timeout_transport_and_503() -> None:
    calls, send = _script(
        {"a": TimeoutError(), "b": ConnectionRefusedError(), "c": 503, "d": 486, "e": 200}
    )
    target, resp, failed = await send_with_failover(["a", "b", "c", "d", "e"], send)
    assert (target, resp.status) == ("d", 486)  # any final response but 503 ends the search
    assert calls == ["a", "b", "c", "d"]
    assert [(a.target, a.outcome) for a in failed] == [
        ("a", "timeout"),
        ("b", "transport"),
        ("c", "503"),
    ]


@pytest.mark.parametrize(
    ("last", "status", "condition"),
    [
        (TimeoutError(), 408, "remote-server-timeout"),
        (OSError("unreachable"), 503, "remote-server-timeout"),
        (503, 503, "internal-server-error"),  # RFC 7247 Table 3 note (9)
    ],
)
async def test_failover_exhausted_mapping(last: object, status: int, condition: str) -> None:
    _, send = _script({"a": 503, "b": last})
    with pytest.raises(TargetsExhausted) as info:
        await send_with_failover(["a", "b"], send)
    assert (info.value.sip_status, info.value.xmpp_condition) == (status, condition)
    assert [a.target for a in info.value.attempts] == ["a", "b"]


async def test_failover_cap_is_at_least_two_and_other_errors_propagate() -> None:
    calls, send = _script({"a": 503, "b": 503, "c": 200})
    with pytest.raises(TargetsExhausted):
        await send_with_failover(["a", "b", "c"], send, max_targets=1)  # R3861-06: >= 2
    assert calls == ["a", "b"]
    _, send = _script({"a": ValueError("bug")})
    with pytest.raises(ValueError):
        await send_with_failover(["a"], send)
    with pytest.raises(TargetsExhausted) as info:
        await send_with_failover([], send)
    assert info.value.sip_status == 404
