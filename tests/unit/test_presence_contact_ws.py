"""Issue 20: the presence Contact names a listener a UDP/TCP phone can reach, not a
WebSocket one (a browser reaches us over its own connection whatever it says)."""

from __future__ import annotations

from pathlib import Path

from gateway.bridge.presence.context import presence_config
from gateway.config import (
    AdminConfig,
    ComponentConfig,
    Config,
    DnsConfig,
    GatewaySection,
    ListenerConfig,
    RateLimitsConfig,
    RegistrarConfig,
    SipConfig,
    Transport,
    XmppConfig,
)


def config(*listeners: ListenerConfig) -> Config:
    return Config(
        gateway=GatewaySection(state_dir=Path("/nonexistent")),
        xmpp=XmppConfig(components=(ComponentConfig("sip.localhost", "s"),)),
        sip=SipConfig(listeners=listeners),
        registrar=RegistrarConfig(),
        rate_limits=RateLimitsConfig(),
        dns=DnsConfig(),
        admin=AdminConfig(enabled=False),
    )


def test_contact_skips_websocket_listeners() -> None:
    ws = ListenerConfig(Transport.WS, "127.0.0.1", 8080)
    tcp = ListenerConfig(Transport.TCP, "127.0.0.1", 5070)
    assert presence_config(config(ws, tcp)).contact == "sip:presence@127.0.0.1:5070;transport=tcp"


def test_contact_of_a_websocket_only_gateway() -> None:
    ws = ListenerConfig(Transport.WS, "127.0.0.1", 8080)
    assert presence_config(config(ws)).contact == "sip:presence@127.0.0.1:8080;transport=ws"
