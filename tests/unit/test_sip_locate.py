"""RFC 3263 §4 target selection over canned DNS answers, RFC 2782 SRV ordering."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.locate import (
    AddressRecord,
    Answer,
    LocateError,
    LocatePlan,
    NaptrRecord,
    Query,
    SrvRecord,
    Target,
    order_srv,
)

Zone = dict[Query, list[Answer]]


def _a(host: str, *addresses: str) -> tuple[Query, list[Answer]]:
    return Query(host, "A"), [AddressRecord(host, a, 4) for a in addresses]


def _drive(plan: LocatePlan, zone: Zone, rounds: int = 50) -> list[Query]:
    """Answer every query from `zone` ([] when absent); return the queries in order."""
    asked: list[Query] = []
    for _ in range(rounds):
        q = plan.next_query()
        if q is None:
            assert plan.done
            return asked
        asked.append(q)
        plan.feed(q, zone.get(q, []))
    raise AssertionError("plan did not finish")


@dataclass(frozen=True)
class FakeUri:
    scheme: str
    host: str
    port: int | None = None
    transport: str | None = None
    maddr: str | None = None


# RFC 3263 §4.1 example (DIGEST §22 item 8).
EXAMPLE: Zone = {
    Query("example.com", "NAPTR"): [
        NaptrRecord(50, 50, "s", "SIPS+D2T", "", "_sips._tcp.example.com."),
        NaptrRecord(90, 50, "s", "SIP+D2T", "", "_sip._tcp.example.com"),
        NaptrRecord(100, 50, "s", "SIP+D2U", "", "_sip._udp.example.com."),
    ],
    Query("_sip._tcp.example.com", "SRV"): [
        SrvRecord(0, 1, 5060, "server1.example.com"),
        SrvRecord(0, 2, 5060, "server2.example.com"),
    ],
    Query("_sip._udp.example.com", "SRV"): [SrvRecord(0, 0, 5060, "server3.example.com")],
    Query("_sips._tcp.example.com", "SRV"): [SrvRecord(0, 0, 5061, "tls.example.com")],
    **dict([_a("server1.example.com", "192.0.2.1"), _a("server2.example.com", "192.0.2.2")]),
    **dict([_a("server3.example.com", "192.0.2.3"), _a("tls.example.com", "192.0.2.9")]),
}


def test_rfc3263_4_1_naptr_example_tcp_udp_client() -> None:
    plan = LocatePlan.from_uri(
        FakeUri("sip", "example.com"), supported=("udp", "tcp"), families=(4,)
    )
    asked = _drive(plan, EXAMPLE)
    assert asked[0] == Query("example.com", "NAPTR")
    # SIPS+D2T is discarded (no TLS); SIP+D2T (order 90) comes before SIP+D2U (order 100).
    assert asked[1:3] == [
        Query("_sip._tcp.example.com", "SRV"),
        Query("_sip._udp.example.com", "SRV"),
    ]
    assert Query("_sips._tcp.example.com", "SRV") not in asked
    targets = plan.targets(random.Random(1))
    assert {t.host for t in targets[:2]} == {"server1.example.com", "server2.example.com"}
    assert all(t.transport == "tcp" and t.port == 5060 for t in targets[:2])
    assert targets[2] == Target("udp", "server3.example.com", "192.0.2.3", 5060)


def test_tls_client_prefers_sips_naptr_for_sip_uri() -> None:
    # §4.1: a client resolving a sip: URI SHOULD retain SIPS records if it supports TLS.
    plan = LocatePlan("example.com", supported=("udp", "tcp", "tls"), families=(4,))
    _drive(plan, EXAMPLE)
    assert plan.targets(random.Random(0))[0] == Target("tls", "tls.example.com", "192.0.2.9", 5061)


def test_sips_uri_discards_non_sips_naptr() -> None:
    plan = LocatePlan.from_uri(
        FakeUri("sips", "example.com"), supported=("udp", "tcp", "tls"), families=(4,)
    )
    asked = _drive(plan, EXAMPLE)
    assert [q for q in asked if q.rdtype == "SRV"] == [Query("_sips._tcp.example.com", "SRV")]
    assert plan.targets(random.Random(0)) == [Target("tls", "tls.example.com", "192.0.2.9", 5061)]


def test_sips_without_tls_support_is_an_error() -> None:
    with pytest.raises(LocateError):
        LocatePlan("example.com", secure=True, supported=("udp", "tcp"))
    with pytest.raises(LocateError):
        LocatePlan("example.com", secure=True, transport="udp", supported=("udp", "tls"))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # §4.1/§4.2 numeric TARGET: no DNS, UDP for sip:, TLS for sips:, default ports.
        (FakeUri("sip", "192.0.2.7"), Target("udp", "192.0.2.7", "192.0.2.7", 5060)),
        (FakeUri("sips", "192.0.2.7"), Target("tls", "192.0.2.7", "192.0.2.7", 5061)),
        (FakeUri("sip", "[2001:DB8::1]", 5070), Target("udp", "2001:db8::1", "2001:db8::1", 5070)),
        (
            FakeUri("sip", "192.0.2.7", transport="TCP"),
            Target("tcp", "192.0.2.7", "192.0.2.7", 5060),
        ),
        # sips with transport=tcp means TLS over TCP.
        (
            FakeUri("sips", "192.0.2.7", transport="tcp"),
            Target("tls", "192.0.2.7", "192.0.2.7", 5061),
        ),
        # RFC 3263 §4: maddr wins over the host.
        (
            FakeUri("sip", "example.com", maddr="198.51.100.1"),
            Target("udp", "198.51.100.1", "198.51.100.1", 5060),
        ),
    ],
)
def test_numeric_targets_need_no_dns(uri: FakeUri, expected: Target) -> None:
    plan = LocatePlan.from_uri(uri, supported=("udp", "tcp", "tls"))
    assert plan.next_query() is None and plan.done
    assert plan.targets(random.Random(0)) == [expected]


def test_explicit_port_uses_address_records_only() -> None:
    zone = dict([_a("example.com", "192.0.2.1", "192.0.2.2")])
    zone[Query("example.com", "AAAA")] = [AddressRecord("example.com", "2001:db8::5", 6)]
    plan = LocatePlan.from_uri(FakeUri("sip", "Example.COM.", 5080))
    asked = _drive(plan, zone)
    assert {q.rdtype for q in asked} == {"A", "AAAA"}  # no NAPTR, no SRV (§4.2 change)
    assert plan.targets(random.Random(0)) == [
        Target("udp", "example.com", "192.0.2.1", 5080),
        Target("udp", "example.com", "192.0.2.2", 5080),
        Target("udp", "example.com", "2001:db8::5", 5080),
    ]


def test_no_naptr_falls_back_to_srv_per_supported_transport() -> None:
    zone: Zone = {
        Query("_sip._tcp.example.org", "SRV"): [SrvRecord(10, 0, 5070, "sip.example.org")],
        **dict([_a("sip.example.org", "203.0.113.5")]),
    }
    plan = LocatePlan("example.org", supported=("udp", "tcp"), families=(4,))
    asked = _drive(plan, zone)
    assert asked[:3] == [
        Query("example.org", "NAPTR"),
        Query("_sip._udp.example.org", "SRV"),
        Query("_sip._tcp.example.org", "SRV"),
    ]
    assert plan.targets(random.Random(0)) == [Target("tcp", "sip.example.org", "203.0.113.5", 5070)]


def test_no_srv_falls_back_to_a_with_default_port() -> None:
    plan = LocatePlan("example.net", supported=("udp", "tcp"), families=(4,))
    asked = _drive(plan, dict([_a("example.net", "198.51.100.9")]))
    assert asked[-1] == Query("example.net", "A")
    assert plan.targets(random.Random(0)) == [Target("udp", "example.net", "198.51.100.9", 5060)]
    sips = LocatePlan("example.net", secure=True, supported=("udp", "tcp", "tls"), families=(4,))
    asked = _drive(sips, dict([_a("example.net", "198.51.100.9")]))
    assert [q.name for q in asked if q.rdtype == "SRV"] == ["_sips._tcp.example.net"]
    assert sips.targets(random.Random(0)) == [Target("tls", "example.net", "198.51.100.9", 5061)]


def test_explicit_transport_queries_its_srv_then_a() -> None:
    plan = LocatePlan.from_uri(FakeUri("sip", "example.net", transport="tcp"), families=(4,))
    asked = _drive(plan, dict([_a("example.net", "198.51.100.9")]))
    assert asked == [Query("_sip._tcp.example.net", "SRV"), Query("example.net", "A")]
    assert plan.targets(random.Random(0)) == [Target("tcp", "example.net", "198.51.100.9", 5060)]


def test_srv_dot_target_means_unavailable_without_a_fallback() -> None:
    zone: Zone = {Query("_sip._udp.example.org", "SRV"): [SrvRecord(0, 0, 0, ".")]}
    plan = LocatePlan("example.org", supported=("udp",), families=(4,))
    asked = _drive(plan, zone)
    assert Query("example.org", "A") not in asked
    assert plan.targets(random.Random(0)) == []


def test_additional_section_answers_skip_queries_and_unresolved_hosts_stay_open() -> None:
    plan = LocatePlan("example.com", supported=("tcp",), families=(4,))
    q = plan.next_query()
    assert q == Query("example.com", "NAPTR")
    plan.feed(q, EXAMPLE[q])
    srv = plan.next_query()
    assert srv == Query("_sip._tcp.example.com", "SRV")
    plan.feed(
        Query("server1.example.com", "A"), [AddressRecord("server1.example.com", "192.0.2.1", 4)]
    )
    plan.feed(srv, EXAMPLE[srv])
    assert plan.next_query() == Query("server2.example.com", "A")
    assert plan.next_query() is None and not plan.done
    targets = plan.targets(random.Random(0))
    assert Target("tcp", "server2.example.com", None, 5060) in targets
    assert Target("tcp", "server1.example.com", "192.0.2.1", 5060) in targets


# --- RFC 2782 weighted ordering ------------------------------------------------------


def _first_pick_probabilities(weights: list[int]) -> list[float]:
    """P(record i picked first) for RFC 2782's draw in [0, total] with running sums >= r,
    zero weights ordered first (computed by enumerating every draw)."""
    order = sorted(range(len(weights)), key=lambda i: weights[i] != 0)
    total = sum(weights)
    counts = [0] * len(weights)
    for r in range(total + 1):
        running = 0
        for i in order:
            running += weights[i]
            if running >= r:
                counts[i] += 1
                break
    return [c / (total + 1) for c in counts]


def test_weight_distribution_chi_square() -> None:
    weights = [10, 20, 70, 0]
    records = [SrvRecord(0, w, 5060, f"h{i}.example") for i, w in enumerate(weights)]
    rng = random.Random(20240501)
    n = 10_000
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(n))
    expected = _first_pick_probabilities(weights)
    chi2 = sum((firsts[f"h{i}.example"] - n * p) ** 2 / (n * p) for i, p in enumerate(expected))
    assert chi2 < 16.27  # 3 degrees of freedom, p = 0.001
    # Sanity: the heavy record is first about 70% of the time.
    assert 0.66 < firsts["h2.example"] / n < 0.72


def test_zero_weight_rarely_first() -> None:
    records = [SrvRecord(0, 0, 1, "zero"), SrvRecord(0, 50, 1, "a"), SrvRecord(0, 50, 1, "b")]
    rng = random.Random(7)
    n = 10_000
    zero_first = sum(order_srv(records, rng)[0].target == "zero" for _ in range(n))
    assert 0 < zero_first < n * 0.03  # 1/101 expected


def test_all_zero_weights_keep_every_record() -> None:
    records = [SrvRecord(0, 0, 1, "a"), SrvRecord(0, 0, 1, "b")]
    assert sorted(r.target for r in order_srv(records, random.Random(1))) == ["a", "b"]


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100)), min_size=1, max_size=8),
    st.integers(0, 2**32),
)
@settings(max_examples=200)
def test_order_srv_is_a_permutation_sorted_by_priority(
    pairs: list[tuple[int, int]], seed: int
) -> None:
    records = [SrvRecord(p, w, 5060, f"t{i}") for i, (p, w) in enumerate(pairs)]
    ordered = order_srv(records, random.Random(seed))
    assert sorted(ordered, key=lambda r: r.target) == sorted(records, key=lambda r: r.target)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)
