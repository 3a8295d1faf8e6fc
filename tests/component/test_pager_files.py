"""issue 17 item 3: file links through a real `Pager` (stub links and router), both ways.

XMPP -> SIP: an XEP-0066 OOB URL goes as text carrying the URL, or as one FT-HTTP MESSAGE
(RCC.07 file-info) to a peer that showed it takes FT-HTTP (sent one, or listed it in
Accept; a 415 turns that off again). SIP -> XMPP: an FT-HTTP body becomes the URL as the
body plus ``<x xmlns='jabber:x:oob'>``; hostile documents are refused with 415/400/413
and a fate line with the reason.
"""

from __future__ import annotations

import asyncio
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.pager.service import Pager
from gateway.bridge.routing import Domains
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest, make_response
from gateway.sip.parser import parse_message
from gateway.xmpp.component import GatewayComponent
from mappings import files
from tests.harness.gateway_proc import gateway_config
from tests.harness.stanzas import stanza_from_text

pytestmark = pytest.mark.unit

COMP = "sip.localhost"
OOB = files.OOB_NS
URL = "https://upload.localhost/f/abc/cat.png"
FT_HTTP = (
    f'<file xmlns="{files.FT_HTTP_NS}"><file-info type="file"><file-size>2048</file-size>'
    "<file-name>dog.jpg</file-name><content-type>image/jpeg</content-type>"
    '<data url="https://files.example.org/dog.jpg" until="2026-12-14T10:00:00Z"/>'
    "</file-info></file>"
).encode()
DOG = b"https://files.example.org/dog.jpg"


class _Links:
    domains = (COMP,)

    def __init__(self) -> None:
        self.sent: list[str] = []  # stanzas to XMPP (text)

    def is_up(self, domain: str) -> bool:
        return True

    def retry_after(self, domain: str) -> int:
        return 1

    async def send_confirmed(self, domain: str, stanza: str) -> None:
        self.sent.append(stanza)

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(ET.tostring(stanza.xml, encoding="unicode"))
        return True


class _Router:
    def __init__(self, cfg: Any) -> None:
        self.domains = Domains(cfg)
        self.requests: list[SipRequest] = []
        self.answer = 200

    async def send(self, aor: Any, build: Callable[[str], SipRequest], *, user: Any = None) -> Any:
        req = build(str(aor))
        self.requests.append(req)
        return make_response(req, self.answer)


class _Incoming:
    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.replies: list[int] = []

    def reply(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self.replies.append(status)


class World:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
        self.comp = GatewayComponent(
            ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
        )
        self.links = _Links()
        self.router = _Router(cfg)
        self.fates: list[tuple[str, str, dict[str, Any]]] = []
        self.pager = Pager(
            cfg,
            self.links,  # type: ignore[arg-type]
            self.router,  # type: ignore[arg-type]
            Metrics(),
            clock=lambda: 1000.0,
            now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        )
        self.pager._fate = self._fate  # type: ignore[method-assign]

    def _fate(self, direction: str, outcome: str, start: float, **fields: Any) -> None:
        self.fates.append((direction, outcome, fields))

    def xmpp(self, payload: str, to: str = f"romeo@{COMP}") -> SipRequest | None:
        """juliet's <message/> to `to`: the MESSAGE the pager sent (None: none)."""
        before = len(self.router.requests)
        text = (
            f'<message xmlns="jabber:component:accept" to="{to}" from="juliet@localhost/p" '
            f'id="j{before}">{payload}</message>'
        )
        self.loop.run_until_complete(self.pager.on_stanza(stanza_from_text(self.comp, text)))
        return self.router.requests[-1] if len(self.router.requests) > before else None

    def sip(self, ctype: str, body: bytes, *extra: str) -> tuple[list[int], str | None]:
        """romeo's MESSAGE to juliet: (the answers, the stanza written to XMPP)."""
        head = [
            "MESSAGE sip:juliet@localhost SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
            "Max-Forwards: 70",
            f"From: <sip:romeo@{COMP}>;tag=t1",
            "To: <sip:juliet@localhost>",
            "Call-ID: f1@127.0.0.1",
            "CSeq: 1 MESSAGE",
            f"Content-Type: {ctype}",
            *extra,
            f"Content-Length: {len(body)}",
        ]
        req = parse_message("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        assert isinstance(req, SipRequest)
        incoming = _Incoming(req)
        before = len(self.links.sent)
        self.loop.run_until_complete(self.pager.sip_message(incoming))  # type: ignore[arg-type]
        stanza = self.links.sent[-1] if len(self.links.sent) > before else None
        return incoming.replies, stanza


@pytest.fixture
def world() -> Iterator[World]:
    loop = asyncio.new_event_loop()
    try:
        yield World(loop)
    finally:
        loop.close()


def oob(url: str = URL, body: str | None = URL) -> str:
    b = f"<body>{body}</body>" if body is not None else ""
    return f'{b}<x xmlns="{OOB}"><url>{url}</url></x>'


def content(req: SipRequest | None) -> tuple[str, bytes]:
    assert req is not None and req.content_type is not None
    return str(req.content_type).split(";")[0], req.body


def test_oob_goes_as_text_to_a_peer_that_showed_nothing(world: World) -> None:
    assert content(world.xmpp(oob())) == ("text/plain", URL.encode())
    assert content(world.xmpp(oob(body="look"))) == ("text/plain", f"look\n{URL}".encode())
    assert content(world.xmpp(oob(body=None))) == ("text/plain", URL.encode())


def test_ft_http_from_sip_reaches_xmpp_as_oob_and_teaches_the_peer(world: World) -> None:
    replies, stanza = world.sip(files.FT_HTTP_TYPE, FT_HTTP)
    assert replies == [200] and stanza is not None
    el = ET.fromstring(stanza)  # <body> has no xmlns: the stream default
    assert el.findtext("body") == "https://files.example.org/dog.jpg"
    assert el.findtext(f"{{{OOB}}}x/{{{OOB}}}url") == "https://files.example.org/dog.jpg"
    assert el.findtext(f"{{{OOB}}}x/{{{OOB}}}desc") == "dog.jpg"
    # romeo sends file links: juliet's link goes to him as FT-HTTP, one MESSAGE
    before = len(world.router.requests)
    ctype, body = content(world.xmpp(oob(body="look")))
    assert len(world.router.requests) == before + 1
    assert ctype == files.FT_HTTP_TYPE
    link = files.parse_ft_http(body)
    assert (link.url, link.name, link.content_type) == (URL, "cat.png", "image/png")
    # a non-http link is never FT-HTTP: text
    assert content(world.xmpp(oob(url="ftp://x.example/a", body="f")))[0] == "text/plain"
    # another peer learnt nothing
    assert content(world.xmpp(oob(), to=f"tybalt@{COMP}"))[0] == "text/plain"


def test_a_415_turns_ft_http_off_and_the_sender_hears_of_it(world: World) -> None:
    world.sip(files.FT_HTTP_TYPE, FT_HTTP)
    world.router.answer = 415
    assert content(world.xmpp(oob()))[0] == files.FT_HTTP_TYPE
    errors = [s for s in world.links.sent if 'type="error"' in s or "type='error'" in s]
    assert errors and "not-acceptable" in errors[-1]
    world.router.answer = 200
    assert content(world.xmpp(oob()))[0] == "text/plain"


def test_accept_header_is_the_other_signal(world: World) -> None:
    world.sip("text/plain", b"hi", f"Accept: text/plain, {files.FT_HTTP_TYPE}")
    assert content(world.xmpp(oob()))[0] == files.FT_HTTP_TYPE
    world.sip("text/plain", b"hi", "Accept: text/plain")  # the last Accept counts
    assert content(world.xmpp(oob()))[0] == "text/plain"


def test_receipt_request_wraps_ft_http_in_cpim(world: World) -> None:
    world.sip(files.FT_HTTP_TYPE, FT_HTTP)
    ctype, body = content(world.xmpp(oob() + '<request xmlns="urn:xmpp:receipts"/>'))
    assert ctype == "message/cpim"
    assert f"Content-Type: {files.FT_HTTP_TYPE}".encode() in body and URL.encode() in body


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (
            FT_HTTP.replace(b"https://files.example.org/dog.jpg", b"javascript:alert(1)"),
            415,
            "scheme",
        ),
        (
            FT_HTTP.replace(b"https://files.example.org/dog.jpg", b"file:///etc/passwd"),
            415,
            "scheme",
        ),
        (FT_HTTP[:40], 400, "malformed"),
        (
            b"<file><file-info><data url='https://a.example/"
            + b"a" * 20000
            + b"'/></file-info></file>",
            413,
            "exceeds",
        ),
    ],
)
def test_hostile_ft_http_is_refused_with_a_fate_line(
    world: World, body: bytes, status: int, reason: str
) -> None:
    replies, stanza = world.sip(files.FT_HTTP_TYPE, body)
    assert replies == [status] and stanza is None  # nothing reached XMPP
    direction, outcome, fields = world.fates[-1]
    assert (direction, outcome, fields["status"]) == ("sip_to_xmpp", "rejected", status)
    assert reason in fields["reason"]
    # a refused document teaches nothing: juliet's link still goes as text
    assert content(world.xmpp(oob()))[0] == "text/plain"


def register(*accept: str) -> SipRequest:
    head = [
        f"REGISTER sip:{COMP} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r",
        "Max-Forwards: 70",
        f"From: <sip:romeo@{COMP}>;tag=r1",
        f"To: <sip:romeo@{COMP}>",
        "Call-ID: r1@127.0.0.1",
        "CSeq: 1 REGISTER",
        "Contact: <sip:romeo@127.0.0.1:5070>",
        *(f"Accept: {a}" for a in accept),
        "Content-Length: 0",
    ]
    req = parse_message("\r\n".join(head).encode() + b"\r\n\r\n")
    assert isinstance(req, SipRequest)
    return req


def test_a_register_listing_ft_http_teaches_the_peer(world: World) -> None:
    """Linphone lists FT-HTTP in the Accept of its REGISTER (one Accept per type)."""
    world.pager.saw_register(f"sip:romeo@{COMP}", register("application/sdp", "text/plain"))
    assert content(world.xmpp(oob()))[0] == "text/plain"
    world.pager.saw_register(f"sip:romeo@{COMP}", register("text/plain", files.FT_HTTP_TYPE))
    assert content(world.xmpp(oob()))[0] == files.FT_HTTP_TYPE
    assert content(world.xmpp(oob(), to=f"tybalt@{COMP}"))[0] == "text/plain"
    world.pager.saw_register(f"sips:romeo@{COMP}", register(files.FT_HTTP_TYPE))  # ignored
