"""The trust decision: who may claim which identity, and never an open relay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.registrar.trust import (
    Accept,
    Challenge,
    Refuse,
    RelayRefused,
    RequestFacts,
    TrustConfig,
    decide,
    fields,
)

HOSTED = "sip.localhost"
XMPP = "xmpp.localhost"
GW = "gw.localhost"
CFG = TrustConfig.build(
    [HOSTED], [XMPP, GW], ["10.1.0.0/16", "::1"], trusted_tls_names=["proxy.partner.net"]
)
FED = TrustConfig.build([HOSTED], [XMPP, GW], ["10.1.0.0/16"], federation=True)
ROMEO = f"sip:romeo@{HOSTED}"


def facts(
    claimed: str | None = ROMEO,
    target: str = XMPP,
    *,
    method: str = "MESSAGE",
    source: str = "192.0.2.7",
    **kw: object,
) -> RequestFacts:
    return RequestFacts(method, source, "udp", claimed, target, **kw)  # type: ignore[arg-type]


def test_hosted_user_is_challenged_then_accepted() -> None:
    assert decide(facts(), CFG) == Challenge(407)
    assert decide(facts(method="REGISTER", target=HOSTED), CFG) == Challenge(401)
    assert decide(facts(authenticated=ROMEO), CFG) == Accept(ROMEO, "digest")
    assert decide(facts(registered_flow=True), CFG) == Accept(ROMEO, "registered-flow")


def test_registered_flow_is_not_enough_for_register_or_when_disabled() -> None:
    assert decide(facts(method="REGISTER", target=HOSTED, registered_flow=True), CFG) == Challenge(
        401
    )
    strict = TrustConfig.build([HOSTED], [XMPP], accept_registered_flow=False)
    assert decide(facts(registered_flow=True), strict) == Challenge(407)


def test_authenticated_as_someone_else_is_refused() -> None:
    decision = decide(facts(authenticated=f"sip:juliet@{HOSTED}"), CFG)
    assert isinstance(decision, Refuse) and decision.status == 403
    assert "juliet" in decision.reason


def test_claiming_a_bridged_xmpp_identity_is_refused() -> None:
    for claimed in (f"sip:juliet@{XMPP}", f"sip:x@{GW}", None):
        decision = decide(facts(claimed, target=HOSTED), CFG)
        assert isinstance(decision, Refuse), claimed


@pytest.mark.parametrize("source", ["10.1.2.3", "::1", "[::1]"])
def test_trusted_peer_by_address(source: str) -> None:
    assert decide(facts(f"sip:juliet@{XMPP}", HOSTED, source=source), CFG) == Accept(
        None, "trusted-peer"
    )


@pytest.mark.parametrize("transport", ["ws", "wss", "WS"])
def test_websocket_clients_are_never_trusted_peers(transport: str) -> None:
    """Issue 20: a trusted address (a reverse proxy in front of browsers, or loopback)
    or certificate does not make a WebSocket client a trusted peer: it is challenged."""
    trusted = {"source": "10.1.2.3", "tls_names": ("proxy.partner.net",)}
    for claimed, target in ((ROMEO, XMPP), (ROMEO, HOSTED)):
        ws = dataclasses.replace(facts(claimed, target, **trusted), transport=transport)
        assert decide(ws, CFG) == Challenge(407)
    ws = dataclasses.replace(facts(f"sip:juliet@{XMPP}", HOSTED, **trusted), transport="ws")
    assert isinstance(decide(ws, CFG), Refuse)


def test_trusted_peer_by_tls_name() -> None:
    decision = decide(facts(tls_names=("PROXY.partner.net",)), CFG)
    assert decision == Accept(None, "trusted-peer")
    assert decide(facts(tls_names=("other.net",)), CFG) == Challenge(407)


def test_never_outside_to_outside_even_for_trusted_peers() -> None:
    for cfg in (CFG, FED):
        for source in ("192.0.2.7", "10.1.2.3"):
            d = decide(facts("sip:a@example.com", "example.org", source=source), cfg)
            assert isinstance(d, RelayRefused) and d.status == 403


def test_without_federation_only_local_domains() -> None:
    assert isinstance(decide(facts(ROMEO, "example.org", authenticated=ROMEO), CFG), RelayRefused)
    assert isinstance(decide(facts("sip:a@example.com", XMPP), CFG), Refuse)


def test_with_federation_local_and_outside() -> None:
    assert decide(facts(ROMEO, "example.org", authenticated=ROMEO), FED) == Accept(ROMEO, "digest")
    assert decide(facts("sip:a@example.com", XMPP), FED) == Accept(None, "federation")
    # A verified TLS peer must be the domain it speaks for.
    assert decide(facts("sip:a@example.com", XMPP, tls_names=("example.com",)), FED) == Accept(
        None, "federation"
    )
    assert isinstance(
        decide(facts("sip:a@example.com", XMPP, tls_names=("evil.net",)), FED), Refuse
    )
    # Federation does not let an outsider claim a hosted identity.
    assert decide(facts(ROMEO, XMPP, source="203.0.113.9"), FED) == Challenge(407)


def test_register_only_for_hosted_domains() -> None:
    d = decide(facts(f"sip:juliet@{XMPP}", XMPP, method="REGISTER", source="10.1.2.3"), CFG)
    assert isinstance(d, RelayRefused)


def test_domains_compare_case_insensitively() -> None:
    assert decide(facts("sip:romeo@SIP.Localhost.", "XMPP.localhost"), CFG) == Challenge(407)


def test_log_fields() -> None:
    f = facts("sip:a@example.com", "example.org")
    d = decide(f, CFG)
    out = fields(f, d)
    assert out["decision"] == "relayrefused" and "outside to outside" in out["reason"]
    assert out["source"] == "192.0.2.7" and out["claimed"] == "sip:a@example.com"
    assert fields(facts(), Accept(ROMEO, "digest"))["via"] == "digest"


def test_from_config(tmp_path: Path) -> None:
    cfg = load_config(
        {
            "xmpp": {"components": [{"domain": HOSTED, "secret": "s"}]},
            "sip": {
                "hosted_domains": [HOSTED],
                "served_xmpp_domains": [XMPP],
                "trusted_peers": ["10.9.0.0/16"],
            },
        },
        base_dir=tmp_path,
        env={},
    )
    trust = TrustConfig.from_config(cfg, federation=True)
    # Mirrored: the component domain is the hosted SIP domain; hosted identities win.
    assert trust.hosted_domains == {HOSTED} and trust.xmpp_domains == {HOSTED, XMPP}
    assert decide(facts(ROMEO, XMPP), trust) == Challenge(407)
    assert trust.federation
    assert decide(facts(f"sip:x@{XMPP}", HOSTED, source="10.9.1.1"), trust) == Accept(
        None, "trusted-peer"
    )


_DOMAINS = st.sampled_from([HOSTED, XMPP, GW, "example.com", "example.org", "a.b.c"])


@given(
    claimed=_DOMAINS,
    target=_DOMAINS,
    source=st.sampled_from(["192.0.2.7", "10.1.2.3", "::1", "2001:db8::1"]),
    method=st.sampled_from(["MESSAGE", "SUBSCRIBE", "REGISTER", "PUBLISH", "NOTIFY"]),
    auth=st.booleans(),
    flow=st.booleans(),
    federation=st.booleans(),
)
@settings(max_examples=200)
def test_property_never_an_open_relay(
    *, claimed: str, target: str, source: str, method: str, auth: bool, flow: bool, federation: bool
) -> None:
    cfg = FED if federation else CFG
    aor = f"sip:u@{claimed}"
    d = decide(
        facts(aor, target, method=method, source=source, authenticated=aor if auth else None,
              registered_flow=flow),
        cfg,
    )  # fmt: skip
    local = {HOSTED, XMPP, GW}
    if isinstance(d, Accept):
        assert claimed in local or target in local  # never outside -> outside
        if not federation:
            assert claimed in local and target in local
        if method == "REGISTER":
            assert target == HOSTED
        if claimed == HOSTED and d.via != "trusted-peer":
            assert d.identity == aor  # a hosted identity is always verified
