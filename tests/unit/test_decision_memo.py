"""`DecisionMemo` (registrar trust gate, issue 11 round 4) against `trust.decide` itself.

Random request facts drawn from small pools (so they repeat), under configurations that
change along the way, with a small limit (so the memo empties): every decision must equal
what `trust.decide` gives for the same facts and configuration.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.registrar import trust
from gateway.registrar.service import DecisionMemo

_DOMAINS = ["sip.example", "xmpp.example", "other.example", "SIP.Example.", ""]

_configs = st.builds(
    trust.TrustConfig.build,
    hosted=st.lists(st.sampled_from(["sip.example", "b.example"]), max_size=2),
    xmpp=st.lists(st.sampled_from(["xmpp.example", "c.example"]), max_size=2),
    trusted_peers=st.lists(
        st.sampled_from(["127.0.0.1", "10.0.0.0/8", "::1", "192.0.2.0/24"]), max_size=2
    ),
    trusted_tls_names=st.lists(st.sampled_from(["peer.example", "sip.example"]), max_size=2),
    federation=st.booleans(),
    accept_registered_flow=st.booleans(),
)

_facts = st.builds(
    trust.RequestFacts,
    method=st.sampled_from(["MESSAGE", "REGISTER", "SUBSCRIBE", "PUBLISH"]),
    source_ip=st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "[::1]", "192.0.2.7", "bogus"]),
    transport=st.sampled_from(["udp", "tcp", "tls"]),
    claimed_aor=st.one_of(
        st.none(),
        st.builds(
            lambda u, d: f"sip:{u}@{d}", st.sampled_from(["a", "b"]), st.sampled_from(_DOMAINS)
        ),
        st.just("sip:nodomain"),
    ),
    target_domain=st.sampled_from(_DOMAINS),
    tls_names=st.lists(st.sampled_from(["peer.example", "SIP.example", "x"]), max_size=2).map(
        tuple
    ),
    authenticated=st.sampled_from([None, "sip:a@sip.example", "sip:b@sip.example"]),
    registered_flow=st.booleans(),
)


@given(
    configs=st.lists(_configs, min_size=1, max_size=3),
    steps=st.lists(st.tuples(st.integers(0, 2), _facts), min_size=1, max_size=40),
    limit=st.integers(1, 8),
)
@settings(max_examples=200, deadline=None)
def test_memo_decides_as_decide(
    configs: list[trust.TrustConfig], steps: list[tuple[int, trust.RequestFacts]], limit: int
) -> None:
    memo = DecisionMemo(limit)
    for which, facts in steps + steps:  # twice: the second pass is answered from the memo
        config = configs[which % len(configs)]
        got = memo.decide(facts, config)
        assert got == trust.decide(facts, config)
        assert type(got) is type(trust.decide(facts, config))
        assert len(memo._known) <= limit


def test_a_new_configuration_object_empties_the_memo() -> None:
    facts = trust.RequestFacts("MESSAGE", "127.0.0.1", "udp", "sip:a@sip.example", "xmpp.example")
    open_cfg = trust.TrustConfig.build(["sip.example"], ["xmpp.example"], ["127.0.0.1"])
    closed = trust.TrustConfig.build(["sip.example"], ["xmpp.example"], [])
    memo = DecisionMemo()
    assert memo.decide(facts, open_cfg) == trust.Accept(None, "trusted-peer")
    assert memo.decide(facts, closed) == trust.Challenge(407)
