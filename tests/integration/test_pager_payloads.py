"""Issue 17 items 4-5 through the gateway process: real Prosody, slixmpp clients, sipp.

* juliet sends an OMEMO message (fake ciphertext: the point is the gateway's detection),
  an OTR one and an OpenPGP one to a sipp UAS: each is refused with not-acceptable naming
  the scheme, and the UAS receives only the plain message sent after them.
* sipp sends a MESSAGE asking for ``positive-delivery, display`` to juliet: her copy is
  markable and asks for a receipt; her XEP-0333 ``<displayed/>`` becomes an IMDN display
  notification that the sipp UAS checks with regexp actions (tests/sipp/
  pager_imdn_display_uas.xml); the reverse: her markable message asks SIP for ``display``,
  and the IMDN ``displayed`` from sipp becomes ``<displayed id=.../>`` for her.
* juliet's XEP-0308 correction reaches sipp as "[correction] ..."; her XEP-0424 retraction
  is refused with feature-not-implemented and reaches nobody.
* an S/MIME signed MESSAGE from sipp is answered 415 with a reason phrase.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from slixmpp import JID
from slixmpp.stanza import Message

from tests.harness.ports import free_port
from tests.harness.sipp import Sipp
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory
from tests.integration.test_pager import (
    COMPONENT,
    NS_RECEIPTS,
    NS_STANZAS,
    Bridge,
    body_of,
    bridge,
    fate_line,
    fill,
    header,
    received_requests,
    responses,
    route_to,
    see_all_messages,
    text_of,
    wait_stanza,
    xmpp_message,
)

__all__ = ["bridge"]  # the fixture, used by name

pytestmark = pytest.mark.asyncio

NS_MARKERS = "urn:xmpp:chat-markers:0"


def el(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def error_of(msg: Message) -> tuple[str | None, str]:
    """The stanza error's condition and text."""
    err = msg.xml.find("{jabber:client}error")
    assert err is not None, msg
    condition = next(
        (
            c.tag.rpartition("}")[2]
            for c in err
            if c.tag.startswith(f"{{{NS_STANZAS}}}") and not c.tag.endswith("}text")
        ),
        None,
    )
    text = err.find(f"{{{NS_STANZAS}}}text")
    return condition, (text.text or "") if text is not None else ""


async def refused(juliet: XmppTestClient, msg: Message) -> tuple[str | None, str]:
    msg.send()
    err = await wait_stanza(juliet, lambda m: m["type"] == "error" and m["id"] == msg["id"])
    return error_of(err)


OMEMO = (
    '<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="27183">'
    '<key rid="31415">ZmFrZSBrZXk=</key><iv>ZmFrZSBpdg==</iv></header>'
    "<payload>ZmFrZSBjaXBoZXJ0ZXh0</payload></encrypted>"
)
EME_OMEMO = (
    '<encryption xmlns="urn:xmpp:eme:0" namespace="eu.siacs.conversations.axolotl" name="OMEMO"/>'
)
FALLBACK = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."


async def test_encrypted_payloads_refused_and_never_relayed(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    cases = [
        (
            FALLBACK,
            [
                el(OMEMO),
                el(EME_OMEMO),
                el(f'<request xmlns="{NS_RECEIPTS}"/>'),
                el(f'<markable xmlns="{NS_MARKERS}"/>'),
                el('<active xmlns="http://jabber.org/protocol/chatstates"/>'),
            ],
            "OMEMO",
        ),
        ("?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAEAAADAVf3Ei72ZgFeKq", [], "OTR"),
        (
            "This message is encrypted with OpenPGP",
            [el('<openpgp xmlns="urn:xmpp:openpgp:0">ZmFrZQ==</openpgp>')],
            "OpenPGP for XMPP",
        ),
    ]
    with br.uas(port=uas_port) as uas:
        for body, children, name in cases:
            msg = xmpp_message(juliet, romeo, body=body, children=children)
            condition, text = await refused(juliet, msg)
            assert condition == "not-acceptable", (name, text)
            assert f"{name} encrypted message not delivered" in text and "SIP" in text
            await fate_line(br.gw, fate="rejected", stanza_id=msg["id"])
        # the UAS takes one call: the plain message after them is the first it sees
        xmpp_message(juliet, romeo, body="plain after the refused ones").send()
        result = await asyncio.to_thread(uas.wait)
    (req,) = received_requests(result)
    assert body_of(req).strip() == "plain after the refused ones"


async def test_displayed_marker_becomes_imdn_display_notification(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory, sipp: Sipp
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    message_id = f"Msg{secrets.token_hex(6)}"
    asked = (
        f"From: <sip:{romeo}>\nTo: <sip:{juliet.jid.bare}>\nNS: imdn <urn:ietf:params:imdn>\n"
        f"imdn.Message-ID: {message_id}\nDateTime: 2024-01-02T03:04:05Z\n"
        "imdn.Disposition-Notification: positive-delivery, display\n\n"
        "Content-Type: text/plain\n\nhave you read this?"
    )
    scenario = fill(
        "pager_imdn_display_uas.xml",
        br.scratch / f"uas-display-{secrets.token_hex(4)}.xml",
        {"MESSAGE_ID": message_id},
    )
    with sipp.uas(scenario, local_port=uas_port, calls=1, timeout=40) as uas:
        result = await br.send(to=f"sip:{juliet.jid.bare}", body=asked, content_type="message/cpim")
        assert result.ok, result.describe()
        got = await wait_stanza(juliet, lambda m: text_of(m) == "have you read this?")
        assert got.xml.find(f"{{{NS_MARKERS}}}markable") is not None
        assert got.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
        shown = juliet.xmpp.make_message(mto=JID(romeo))
        shown.xml.append(el(f'<displayed xmlns="{NS_MARKERS}" id="{got["id"]}"/>'))
        shown.send()
        uas_result = await asyncio.to_thread(uas.wait)
    assert uas_result.ok, uas_result.describe()  # the regexp checks held
    (req,) = received_requests(uas_result)
    assert f"<message-id>{message_id}</message-id>" in body_of(req)
    await fate_line(br.gw, fate="delivered", kind="marker")


async def test_imdn_displayed_from_sip_becomes_displayed_marker(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    with br.uas(port=uas_port) as uas:
        msg = xmpp_message(
            juliet,
            romeo,
            body="tell me when you read it",
            children=[el(f'<markable xmlns="{NS_MARKERS}"/>')],
        )
        msg.send()
        result = await asyncio.to_thread(uas.wait)
    (req,) = received_requests(result)
    cpim_body = body_of(req)
    assert re.search(r"^imdn\.Disposition-Notification: display\r?$", cpim_body, re.M)
    found = re.search(r"^imdn\.Message-ID: (\S+)", cpim_body, re.M)
    assert found is not None
    notification = (
        f"From: <sip:{romeo}>\nTo: <sip:{juliet.jid.bare}>\nNS: imdn <urn:ietf:params:imdn>\n"
        f"imdn.Message-ID: n{secrets.token_hex(6)}\n\n"
        "Content-Type: message/imdn+xml\nContent-Disposition: notification\n\n"
        '<imdn xmlns="urn:ietf:params:xml:ns:imdn">'
        f"<message-id>{found.group(1)}</message-id><datetime>2024-01-02T03:04:05Z</datetime>"
        "<display-notification><status><displayed/></status></display-notification></imdn>"
    )
    result = await br.send(
        to=f"sip:{juliet.jid.bare}",
        sender=f"sip:{romeo}",
        body=notification,
        content_type="message/cpim",
    )
    assert result.ok, result.describe()
    marker = await wait_stanza(
        juliet, lambda m: m.xml.find(f"{{{NS_MARKERS}}}displayed") is not None
    )
    displayed = marker.xml.find(f"{{{NS_MARKERS}}}displayed")
    assert displayed is not None and displayed.get("id") == msg["id"]
    assert str(JID(marker["from"]).bare) == romeo


async def test_correction_marked_and_retraction_refused(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    with br.uas(port=uas_port, calls=2) as uas:
        first = xmpp_message(juliet, romeo, body="meet me at nine")
        first.send()
        await fate_line(br.gw, fate="delivered", stanza_id=first["id"])
        retract = xmpp_message(
            juliet,
            romeo,
            body="This person attempted to retract a previous message, but it's unsupported"
            " by your client.",
            children=[el(f'<retract xmlns="urn:xmpp:message-retract:1" id="{first["id"]}"/>')],
        )
        condition, text = await refused(juliet, retract)
        assert condition == "feature-not-implemented" and "stays visible" in text
        xmpp_message(
            juliet,
            romeo,
            body="meet me at ten",
            children=[el(f'<replace xmlns="urn:xmpp:message-correct:0" id="{first["id"]}"/>')],
        ).send()
        result = await asyncio.to_thread(uas.wait)
    bodies = [body_of(r).strip() for r in received_requests(result)]
    assert bodies == ["meet me at nine", "[correction] meet me at ten"]


SIGNED = (
    "--b1\nContent-Type: text/plain\n\nsigned hello\n--b1\n"
    "Content-Type: application/pkcs7-signature; name=smime.p7s\n\nMIIBfake\n--b1--"
)


async def test_smime_from_sip_is_415_with_a_reason(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    result = await br.send(
        to=f"sip:{juliet.jid.bare}",
        body=SIGNED,
        content_type='multipart/signed; protocol="application/pkcs7-signature"; boundary=b1',
        status=415,
    )
    assert result.ok, result.describe()
    (resp,) = responses(result)
    assert resp.startswith("SIP/2.0 415 Signed Content Not Relayed To XMPP")
    assert "message/cpim" in (header(resp, "Accept") or "")
    assert not [m for m in juliet.messages if "signed hello" in text_of(m)]
