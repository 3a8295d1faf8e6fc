"""issue 22 items 1 and 2 end to end: what the gateway learns about a SIP contact from its
MESSAGEs shows in the contact's vCard and disco#info, as an XMPP client sees them.

Real peers: the gateway PROCESS (127.0.0.1 a trusted peer, as in test_pager.py), the
session Prosody with a slixmpp user (juliet), and a raw SIP client on a UDP socket sending
MESSAGEs from romeo (sip:romeo@sip.localhost, not a hosted user: no user-file name).
Juliet, through Prosody:

* fetches romeo's vCard: FN is his user part until a MESSAGE shows
  ``From: "Romeo Montague" <sip:romeo@...>``, then that name; a P-Asserted-Identity from
  the trusted peer then wins over the From (RFC 3325);
* asks romeo's disco#info: no chat states until his peer sends an isComposing, then chat
  states, and the node ``CAPS_NODE#ver`` with the §5.1 hash of that answer (computed here,
  as a client does) answers the same content.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import LOOPBACK
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory
from tests.integration.test_contact_card import caps_ver_of
from tests.integration.test_pager import ISCOMPOSING_ACTIVE, Bridge, bridge, wait_stanza

pytestmark = pytest.mark.asyncio

__all__ = ["bridge"]  # the fixture, shared with test_pager.py

COMPONENT = "sip.localhost"
ROMEO = f"romeo@{COMPONENT}"
LIMIT = 15.0
V = "{vcard-temp}"
INFO = "{http://jabber.org/protocol/disco#info}"
CAPS_NODE = "https://cpim-gateway.invalid/caps"
CHATSTATES = "http://jabber.org/protocol/chatstates"


def send_message(port: int, to: str, body: str, ctype: str, *headers: str) -> bytes:
    """One MESSAGE from romeo on a raw UDP socket; the status line of the final answer."""
    call_id = f"names-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(LIMIT)
        here = sock.getsockname()[1]
        head = [
            f"MESSAGE sip:{to} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{here};branch=z9hG4bK-{call_id}",
            "Max-Forwards: 70",
            *headers,
            f"To: <sip:{to}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 MESSAGE",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body.encode())}",
        ]
        sock.sendto(("\r\n".join(head) + "\r\n\r\n" + body).encode(), (LOOPBACK, port))
        while True:
            data, _ = sock.recvfrom(65535)
            if not data.startswith(b"SIP/2.0 1"):
                return data.split(b"\r\n", 1)[0]


async def sip(port: int, to: str, body: str, ctype: str, *headers: str) -> bytes:
    return await asyncio.to_thread(send_message, port, to, body, ctype, *headers)


async def full_name(juliet: XmppTestClient) -> str | None:
    iq = juliet.xmpp.make_iq_get(ito=ROMEO)
    iq.append(ET.Element(f"{V}vCard"))
    result = await iq.send(timeout=LIMIT)
    return result.xml.findtext(f"{V}vCard/{V}FN")


async def disco(juliet: XmppTestClient, node: str | None = None) -> ET.Element:
    info: Any = await juliet.disco_info(f"{ROMEO}/phone", node=node, timeout=LIMIT)
    query = info.xml.find(f"{INFO}query")
    assert query is not None
    return query


def features(query: ET.Element) -> set[str]:
    return {f.get("var", "") for f in query.findall(f"{INFO}feature")}


async def test_name_and_features_learned_from_romeos_messages(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    br = bridge()
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    to = str(juliet.jid.bare)
    assert await full_name(juliet) == "romeo"  # nothing learned yet: the user part
    before = await disco(juliet)
    assert CHATSTATES not in features(before)

    status = await sip(br.port, to, "hi", "text/plain",
                       f'From: "Romeo Montague" <sip:{ROMEO}>;tag=r1')  # fmt: skip
    assert status == b"SIP/2.0 200 OK"
    await wait_stanza(juliet, lambda m: str(m["body"]) == "hi")
    assert await full_name(juliet) == "Romeo Montague"

    status = await sip(br.port, to, "hello", "text/plain",
                       f'From: "Anybody" <sip:{ROMEO}>;tag=r2',
                       f'P-Asserted-Identity: "Romeo (asserted)" <sip:{ROMEO}>')  # fmt: skip
    assert status == b"SIP/2.0 200 OK"
    assert await full_name(juliet) == "Romeo (asserted)"  # a trusted peer's assertion

    status = await sip(br.port, to, ISCOMPOSING_ACTIVE, "application/im-iscomposing+xml",
                       f"From: <sip:{ROMEO}>;tag=r3")  # fmt: skip
    assert status == b"SIP/2.0 200 OK"
    after = await disco(juliet)
    assert CHATSTATES in features(after)
    ver = caps_ver_of(after)
    assert ver != caps_ver_of(before)
    node = await disco(juliet, f"{CAPS_NODE}#{ver}")  # XEP-0115 §6.2, as a client asks
    assert caps_ver_of(node) == ver and features(node) == features(after)
