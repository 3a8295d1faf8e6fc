"""XEP-0100 §6.3 prompt: what a user types -> the JID, over the addressing modes and the
gateway's components (gateway/xmpp/disco.py `prompt_translator`)."""

from __future__ import annotations

import pytest

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp.disco import prompt_translator
from mappings.addresses import AddressError

MIRROR = ComponentConfig("sip.example.com", "s", Addressing.MIRRORED)
MIRROR2 = ComponentConfig("voip.example.net", "s", Addressing.MIRRORED)
ESCAPE = ComponentConfig("gw.example.org", "s", Addressing.ESCAPED)
ALL = (MIRROR, MIRROR2, ESCAPE)


@pytest.mark.parametrize(
    ("component", "components", "prompt", "jid"),
    [
        # mirrored: user of the component's own SIP domain, in every spelling
        (MIRROR, (), "romeo", "romeo@sip.example.com"),
        (MIRROR, (), "romeo@sip.example.com", "romeo@sip.example.com"),
        (MIRROR, (), "sip:romeo@SIP.example.com", "romeo@sip.example.com"),
        (MIRROR, (), "  sip:o'malley@sip.example.com  ", "o\\27malley@sip.example.com"),
        (MIRROR, (), '"Romeo" <sip:romeo@sip.example.com>', "romeo@sip.example.com"),
        (MIRROR, (), "Romeo <sip:romeo@sip.example.com;transport=tcp>", "romeo@sip.example.com"),
        (MIRROR, (), "sip:romeo@sip.example.com;gr=abc", "romeo@sip.example.com"),  # bare
        (MIRROR, (), "im:romeo@sip.example.com", "romeo@sip.example.com"),
        (MIRROR, (), "+1 555 123-4567", "+15551234567@sip.example.com"),
        (MIRROR, (), "tel:+1-555-123-4567", "+15551234567@sip.example.com"),
        # escaped: any SIP domain, user@host in the localpart (XEP-0106)
        (ESCAPE, (), "romeo@example.com", "romeo\\40example.com@gw.example.org"),
        (ESCAPE, (), "sip:o'malley@example.com", "o\\27malley\\40example.com@gw.example.org"),
        (ESCAPE, (), "+15551234567", "+15551234567@gw.example.org"),
        (
            ESCAPE,
            (),
            "sip:+1-555-123-4567@example.com;user=phone",
            "+15551234567\\40example.com@gw.example.org",
        ),
        # several components: the one that represents that SIP domain
        (MIRROR, ALL, "bob@voip.example.net", "bob@voip.example.net"),
        (MIRROR, ALL, "bob@elsewhere.example", "bob\\40elsewhere.example@gw.example.org"),
        (ESCAPE, ALL, "bob@sip.example.com", "bob@sip.example.com"),
        (ESCAPE, ALL, "+15551234567", "+15551234567@gw.example.org"),
        (MIRROR2, ALL, "carol", "carol@voip.example.net"),
    ],
)
def test_translates(
    component: ComponentConfig, components: tuple[ComponentConfig, ...], prompt: str, jid: str
) -> None:
    assert prompt_translator(component, components)(prompt) == jid


@pytest.mark.parametrize(
    ("component", "components", "prompt", "condition", "text"),
    [
        # not an address: bad-request
        (MIRROR, (), "romeo montague", "bad-request", "contains spaces"),
        (MIRROR, (), "sip:", "bad-request", "is not a SIP address"),
        (MIRROR, (), "sip:@sip.example.com", "bad-request", "is not a SIP address"),
        (MIRROR, (), "romeo@", "bad-request", "is not a SIP address"),
        (ESCAPE, (), "romeo", "bad-request", "no host"),
        (ESCAPE, (), "5551234", "bad-request", "no host"),
        (MIRROR, (), "<>", "bad-request", "is not a SIP address"),
        (MIRROR, (), "mailto:romeo@example.com", "bad-request", "is not a SIP address"),
        # an address the gateway cannot reach: not-acceptable
        (MIRROR, (), "romeo@example.com", "not-acceptable", "'example.com' is not reachable"),
        (MIRROR, (MIRROR2,), "sip:romeo@example.com", "not-acceptable", "not reachable"),
        (MIRROR, (), "sips:romeo@sip.example.com", "not-acceptable", "sips"),
        (ESCAPE, (), "xmpp:juliet@localhost", "not-acceptable", "xmpp"),
        (ESCAPE, (), "sip:example.com", "bad-request", "no user part"),
    ],
)
def test_refuses_with_a_condition_and_a_text(
    component: ComponentConfig,
    components: tuple[ComponentConfig, ...],
    prompt: str,
    condition: str,
    text: str,
) -> None:
    with pytest.raises(AddressError) as info:
        prompt_translator(component, components)(prompt)
    assert info.value.xmpp_condition == condition
    assert text in info.value.reason
    assert info.value.to_xmpp().text == info.value.reason
