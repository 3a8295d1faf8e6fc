"""File links through the gateway process (issue 17 item 3, docs/pager.md "Files"):
the session Prosody with slixmpp juliet, sipp as romeo (a trusted peer sending, a UAS on a
static route receiving), and baresip (a registered user agent that knows no file transfer).

- juliet's XEP-0066 OOB link to a SIP peer that showed nothing goes as text/plain carrying
  the URL; after romeo sent an FT-HTTP MESSAGE, the next link goes to him as one FT-HTTP
  MESSAGE (RCC.07 file-info);
- romeo's FT-HTTP reaches juliet as <x xmlns='jabber:x:oob'> plus the URL as the body;
- hostile FT-HTTP (a javascript: or file: URL, broken XML) is refused and logged;
- baresip gets the link as text.
The gateway never fetches the URL: the URLs name a local port whose listener counts
connections (none).
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable

import pytest
from lxml import etree
from slixmpp.stanza import Message

from tests.harness.baresip import Baresip, account_line
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory
from tests.integration.test_pager import (
    COMPONENT,
    Bridge,
    body_of,
    bridge,  # noqa: F401  (the fixture)
    fate_line,
    header,
    received_requests,
    route_to,
    see_all_messages,
    text_of,
    wait_stanza,
)
from tests.integration.test_pager_baresip import LIMIT, fate, setup  # noqa: F401

pytestmark = pytest.mark.asyncio

FT_HTTP_TYPE = "application/vnd.gsma.rcs-ft-http+xml"
FT_NS = "urn:gsma:params:xml:ns:rcs:rcs:fthttp"
OOB = "jabber:x:oob"
DEAD = free_port()


@pytest.fixture
async def file_server() -> AsyncIterator[list[str]]:
    """A TCP listener on the port every file URL names: the peers it saw (the gateway
    never fetches a file, so none)."""
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", DEAD)
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


def ft_http(url: str, name: str = "dog.jpg") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<file xmlns="{FT_NS}">'
        f'<file-info type="file"><file-size>2048</file-size><file-name>{name}</file-name>'
        f'<content-type>image/jpeg</content-type><data url="{url}" '
        'until="2030-01-01T00:00:00Z"/></file-info></file>'
    )


def oob_message(client: XmppTestClient, to: str, url: str, body: str | None) -> Message:
    msg = client.xmpp.make_message(mto=to, mbody=body)
    msg["id"] = secrets.token_hex(6)
    x = ET.SubElement(msg.xml, f"{{{OOB}}}x")
    ET.SubElement(x, f"{{{OOB}}}url").text = url
    ET.SubElement(x, f"{{{OOB}}}desc").text = "a cat"
    return msg


def oob_url(msg: Message) -> str | None:
    return msg.xml.findtext(f"{{{OOB}}}x/{{{OOB}}}url")


async def test_oob_to_sipp_as_text_then_ft_http_and_ft_http_to_juliet(
    bridge: Callable[..., Bridge],  # noqa: F811
    xmpp_client: ClientFactory,
    file_server: list[str],
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    cat = f"http://127.0.0.1:{DEAD}/upload/k3y/cat.png"
    dog = f"https://127.0.0.1:{DEAD}/files/dog.jpg"
    with br.uas(port=uas_port, calls=2) as uas:
        # romeo has shown no FT-HTTP: text carrying the URL (the body lacks it: appended)
        oob_message(juliet, romeo, cat, "look at my cat").send()
        await fate_line(br.gw, fate="delivered", kind="content")
        # romeo sends a file link: juliet gets the OOB URL and the URL as the body
        result = await br.send(
            to=f"sip:{juliet.jid.bare}", body=ft_http(dog), content_type=FT_HTTP_TYPE
        )
        assert result.ok, result.describe()
        got = await wait_stanza(juliet, lambda m: oob_url(m) is not None)
        assert oob_url(got) == dog and text_of(got) == dog
        assert got.xml.findtext(f"{{{OOB}}}x/{{{OOB}}}desc") == "dog.jpg"
        # now romeo takes FT-HTTP: juliet's next link is one FT-HTTP MESSAGE
        oob_message(juliet, romeo, cat, cat).send()
        result = await asyncio.to_thread(uas.wait)
    assert result.ok, result.describe()
    first, second = received_requests(result)
    assert (header(first, "Content-Type") or "").lower() == "text/plain;charset=utf-8"
    assert body_of(first).strip() == f"look at my cat\n{cat}"
    assert (header(second, "Content-Type") or "").lower() == FT_HTTP_TYPE
    root = etree.fromstring(body_of(second).strip().encode())
    info = root.find(f"{{{FT_NS}}}file-info")
    assert info is not None and info.get("type") == "file"
    assert info.findtext(f"{{{FT_NS}}}file-name") == "cat.png"
    assert info.findtext(f"{{{FT_NS}}}content-type") == "image/png"
    data = info.find(f"{{{FT_NS}}}data")
    assert data is not None and data.get("url") == cat
    await asyncio.sleep(0.5)
    assert file_server == []  # the gateway never fetched either file


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (ft_http("javascript:alert(1)"), 415, "scheme"),
        (ft_http("file:///etc/passwd"), 415, "scheme"),
        (ft_http("https://a.example/x")[:-20], 400, "malformed"),
    ],
)
async def test_hostile_ft_http_is_refused_and_logged(
    bridge: Callable[..., Bridge],  # noqa: F811
    xmpp_client: ClientFactory,
    body: str,
    status: int,
    reason: str,
) -> None:
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    call_id = f"{secrets.token_hex(6)}@sipp"
    result = await br.send(
        to=f"sip:{juliet.jid.bare}",
        body=body,
        content_type=FT_HTTP_TYPE,
        status=status,
        call_id=call_id,
    )
    assert result.ok, result.describe()
    line = await fate_line(br.gw, fate="rejected", call_id=call_id, status=str(status))
    assert reason in line
    with pytest.raises(TimeoutError):
        await wait_stanza(juliet, lambda m: True, timeout=1.5)


async def test_baresip_gets_the_link_as_text(
    setup: tuple[GatewayProcess, int, Baresip],  # noqa: F811
    xmpp_client: ClientFactory,
) -> None:
    gw, port, romeo = setup
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    await romeo.start()
    outcome = await romeo.register(
        account_line(f"sip:romeo@{COMPONENT}", "romeo", ("127.0.0.1", port))
    )
    assert outcome["type"] == "REGISTER_OK", f"{romeo.tail()}\n{gw.tail()}"
    url = f"https://127.0.0.1:{DEAD}/upload/x/notes.txt"
    oob_message(juliet, f"romeo@{COMPONENT}", url, url).send()
    got = await romeo.wait_message(url, timeout=LIMIT)
    assert got.peer.startswith(f"sip:{juliet.jid.bare}")
    await fate(gw, r"direction=xmpp_to_sip fate=delivered status=200")
