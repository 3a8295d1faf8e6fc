"""Pager-mode IM through the gateway process: real Prosody, real slixmpp clients, sipp.

SIP side: sipp UACs from 127.0.0.1 (a trusted peer) send MESSAGEs to the gateway, and sipp
UASs reached by a static route receive them. XMPP side: XmppTestClient accounts on the
session Prosody. Scenario templates are tests/sipp/pager_*.xml; @@FIELDS@@ are filled in
here. Everything waits for conditions with bounded timeouts; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.stanza import Message

from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config, merge
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import SCENARIO_DIR, Sipp, SippProcess, SippResult
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.asyncio

COMPONENT = "sip.localhost"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


# -- sipp templates ------------------------------------------------------------------------


def fill(template: str, dest: Path, fields: Mapping[str, str], encoding: str = "utf-8") -> Path:
    """Write tests/sipp/<template> with its @@FIELDS@@ replaced into `dest` (sipp sends
    the file's bytes as they are: `encoding` is the charset of a non-ASCII body)."""
    text = (SCENARIO_DIR / template).read_text(encoding="utf-8")
    for key, value in fields.items():
        text = text.replace(f"@@{key}@@", value)
    assert "@@" not in text, f"unfilled field in {template}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text.encode(encoding))
    return dest


def header_lines(headers: Sequence[tuple[str, str]]) -> str:
    """Header lines for a template's header slot (each ends its line; none: empty)."""
    return "".join(f"{name}: {value}\n      " for name, value in headers)


@dataclass
class Bridge:
    gw: GatewayProcess
    port: int  # UDP and TCP listeners share it
    sipp: Sipp
    scratch: Path

    @property
    def remote(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def send(self, **kwargs: Any) -> SippResult:
        """`send_blocking` in a thread, so the XMPP clients keep running meanwhile."""
        return await asyncio.to_thread(lambda: self.send_blocking(**kwargs))

    def send_blocking(
        self,
        *,
        to: str,
        sender: str = f"sip:romeo@{COMPONENT}",
        body: str,
        content_type: str = "text/plain",
        headers: Sequence[tuple[str, str]] = (),
        status: int = 200,
        call_id: str | None = None,
        max_forwards: int = 70,
        transport: str = "u1",
        encoding: str = "utf-8",
    ) -> SippResult:
        """One MESSAGE from sipp; the result (its messages.log holds the response)."""
        assert "]]>" not in body
        scenario = fill(
            "pager_uac.xml",
            self.scratch / f"uac-{secrets.token_hex(4)}.xml",
            {
                "STATUS": str(status),
                "CONTENT_TYPE": content_type,
                "HEADERS": header_lines(headers),
                "BODY": body,
                "MAX_FORWARDS": str(max_forwards),
            },
            encoding,
        )
        return self.sipp.run(
            scenario,
            remote=self.remote,
            transport=transport,
            keys={"to_uri": to, "from_uri": sender},
            extra_args=["-cid_str", call_id or f"%u-{secrets.token_hex(6)}@sipp"],
            timeout=20,
        )

    @contextmanager
    def uas(
        self,
        *,
        status: str = "200 OK",
        headers: Sequence[tuple[str, str]] = (),
        calls: int = 1,
        port: int | None = None,
        transport: str = "u1",
        scenario: str = "pager_uas.xml",
    ) -> Iterator[SippProcess]:
        path = fill(
            scenario,
            self.scratch / f"uas-{secrets.token_hex(4)}.xml",
            {"STATUS": status, "HEADERS": header_lines(headers)},
        )
        with self.sipp.uas(
            path, local_port=port, calls=calls, transport=transport, timeout=40
        ) as proc:
            yield proc


def _received(result: SippResult, start: str) -> list[str]:
    """Messages sipp received whose start line matches `start` (from -trace_msg)."""
    out = []
    for chunk in re.split(r"-{5,} \d{4}-.*\n", result.messages):
        head, _, rest = chunk.partition("\n")
        if "received" in head:
            rest = rest.lstrip("\r\n")
            if re.match(start, rest):
                out.append(rest.rstrip())
    return out


def received_requests(result: SippResult) -> list[str]:
    return _received(result, r"MESSAGE sip")


def responses(result: SippResult) -> list[str]:
    return _received(result, r"SIP/2\.0 \d{3}")


def header(message: str, name: str) -> str | None:
    m = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\r?$", message, re.MULTILINE | re.IGNORECASE)
    return m.group(1).strip() if m else None


def body_of(message: str) -> str:
    parts = re.split(r"\r?\n\r?\n", message, maxsplit=1)
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture
def bridge(prosody: ProsodyServer, sipp: Sipp, tmp_path: Path) -> Iterator[Callable[..., Bridge]]:
    """start(sip={...}, xmpp={...}, wait_link=True) -> a gateway on the session Prosody.

    The gateway logs at info: the fate lines are what the tests read (and debug-level SIP
    tracing costs time on a shared machine).
    """
    procs: list[GatewayProcess] = []

    def start(
        *, wait_link: bool = True, sip: Mapping[str, Any] | None = None, **over: Any
    ) -> Bridge:
        port = free_port()
        sip_cfg: dict[str, Any] = {
            "listeners": [
                {"transport": "udp", "address": LOOPBACK, "port": port},
                {"transport": "tcp", "address": LOOPBACK, "port": port},
            ],
            "hosted_domains": [],
            "trusted_peers": ["127.0.0.1"],
            "timers": {"t1": 0.1},
        }
        sip_cfg.update(sip or {})
        n = len(procs) + 1
        base: dict[str, Any] = {
            "gateway": {"state_dir": str(tmp_path / f"state-{n}")},
            "xmpp": {
                "port": prosody.component_port,
                "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
            },
            "sip": sip_cfg,
            "admin": {"enabled": False},
        }
        config = gateway_config(**merge(base, over))
        gw = GatewayProcess(config, tmp_path / f"gateway-{n}", log_level="info")
        procs.append(gw)
        gw.start()
        if wait_link:
            gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=20)
        return Bridge(gw, port, sipp, tmp_path / "scenarios")

    try:
        yield start
    finally:
        for gw in procs:
            if gw.running:
                gw.kill()


def route_to(port: int, transport: str | None = None) -> list[dict[str, str]]:
    target = f"sip:{LOOPBACK}:{port}" + (f";transport={transport}" if transport else "")
    return [{"domain": COMPONENT, "target": target}]


def see_all_messages(client: XmppTestClient) -> XmppTestClient:
    return client.see_all_messages()


def text_of(msg: Message) -> str:
    """The body without the line end sipp puts after every body."""
    return str(msg["body"] or "").strip()


async def wait_stanza(
    client: XmppTestClient, pred: Callable[[Message], bool], timeout: float = 15.0
) -> Message:
    return await client.wait_message(pred, timeout=timeout)


async def fate_line(gw: GatewayProcess, **fields: str) -> str:
    """The pager's fate line with these fields (waited for in a thread: the XMPP clients
    must keep running meanwhile)."""
    pattern = r"gateway\.bridge\.pager: message " + "".join(
        rf"(?=.*\b{k}={re.escape(v)}\b)" for k, v in fields.items()
    )
    found = await asyncio.to_thread(gw.wait_for_log, pattern + r".*", 15)
    return found.group(0)


# -- SIP -> XMPP -----------------------------------------------------------------------------


async def test_sip_to_xmpp_table2_every_row(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    """Call-ID -> thread, Subject, Content-Language -> xml:lang, From + gr -> full JID,
    Request-URI -> to, non-ASCII text/plain body; pager mode: no type (R7572-06)."""
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    call_id = f"9E97FB43-{secrets.token_hex(4)}@sipp"
    text = "Neither, fair saint — Příliš žluťoučký kůň"
    result = await br.send(
        to=f"sip:{juliet.jid.bare}",
        sender=f"sip:romeo@{COMPONENT};gr=dr4hcr0st3lup4c",
        body=text,
        content_type="text/plain;charset=UTF-8",
        headers=[("Subject", "Balcony"), ("Content-Language", "cs")],
        call_id=call_id,
    )
    assert result.ok, result.describe()
    msg = await wait_stanza(juliet, lambda m: m["thread"] == call_id)
    assert str(msg["from"]) == f"romeo@{COMPONENT}/dr4hcr0st3lup4c"
    assert text_of(msg) == text
    assert msg["subject"] == "Balcony"
    assert msg.xml.get(XML_LANG) == "cs"
    assert msg.xml.get("type") in (None, "normal")
    line = await fate_line(br.gw, fate="delivered", call_id=call_id)
    assert f"stanza_id={msg['id']}" in line and "status=200" in line


async def test_sip_to_xmpp_202_when_configured(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    br = bridge(sip={"message_success_status": 202})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    result = await br.send(to=f"sip:{juliet.jid.bare}", body="accepted, not delivered", status=202)
    assert result.ok, result.describe()
    await wait_stanza(juliet, lambda m: text_of(m) == "accepted, not delivered")


async def test_html_becomes_xhtml_im_with_plain_body(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    html = "<html><body><p>Wherefore art <b>thou</b><script>alert(1)</script></p></body></html>"
    result = await br.send(to=f"sip:{juliet.jid.bare}", body=html, content_type="text/html")
    assert result.ok, result.describe()
    msg = await wait_stanza(juliet, lambda m: "Wherefore" in (m["body"] or ""))
    assert text_of(msg) == "Wherefore art thou"
    xhtml = msg.xml.find(f"{{{NS_XHTML_IM}}}html/{{http://www.w3.org/1999/xhtml}}body")
    assert xhtml is not None
    strong = xhtml.find(".//{http://www.w3.org/1999/xhtml}strong")
    assert strong is not None and strong.text == "thou"
    assert "script" not in str(msg) and "alert" not in str(msg)


def cpim(sender: str, recipient: str, inner_type: str, body: str, extra: str = "") -> str:
    return (
        f"From: <{sender}>\nTo: <{recipient}>\nDateTime: 2024-01-02T03:04:05Z\n{extra}\n"
        f"Content-Type: {inner_type}\n\n{body}"
    )


async def test_cpim_unwrapped_and_identity_checked(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    to = f"sip:{juliet.jid.bare}"
    good = cpim(f"im:romeo@{COMPONENT}", f"im:{juliet.jid.bare}", "text/plain", "wrapped hello")
    result = await br.send(to=to, body=good, content_type="message/cpim")
    assert result.ok, result.describe()
    msg = await wait_stanza(juliet, lambda m: text_of(m) == "wrapped hello")
    assert str(JID(msg["from"]).bare) == f"romeo@{COMPONENT}"
    spoofed = cpim(f"im:tybalt@{COMPONENT}", f"im:{juliet.jid.bare}", "text/plain", "spoofed")
    result = await br.send(to=to, body=spoofed, content_type="message/cpim", status=403)
    assert result.ok, result.describe()
    wrong_to = cpim(f"im:romeo@{COMPONENT}", "im:nurse@localhost", "text/plain", "misdirected")
    result = await br.send(to=to, body=wrong_to, content_type="message/cpim", status=403)
    assert result.ok, result.describe()
    with pytest.raises(TimeoutError):
        await wait_stanza(juliet, lambda m: text_of(m) in ("spoofed", "misdirected"), timeout=2)


async def test_unknown_content_type_415_with_accept(bridge: Callable[..., Bridge]) -> None:
    br = bridge()
    result = await br.send(
        to="sip:nurse@localhost",
        body="GIF89a",
        content_type="application/octet-stream",
        status=415,
    )
    assert result.ok, result.describe()
    (resp,) = [r for r in responses(result) if r.startswith("SIP/2.0 415")]
    accept = header(resp, "Accept") or ""
    assert "text/plain" in accept and "message/cpim" in accept


async def test_charsets_converted_or_refused(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    to = f"sip:{juliet.jid.bare}"
    czech = "Příliš žluťoučký kůň"  # every letter exists in windows-1250
    result = await br.send(
        to=to, body=czech, content_type="text/plain;charset=windows-1250", encoding="cp1250"
    )
    assert result.ok, result.describe()
    await wait_stanza(juliet, lambda m: text_of(m) == czech)
    result = await br.send(
        to=to, body="x", content_type="text/plain;charset=x-no-such-charset", status=415
    )
    assert result.ok, result.describe()


async def test_unknown_recipient_gets_404(bridge: Callable[..., Bridge]) -> None:
    """Prosody bounces service-unavailable for an account that does not exist (RFC 6121
    §8.5.2.2.1) before our confirmation ping is answered: the SIP sender gets 404."""
    br = bridge()
    result = await br.send(to="sip:nobody-here@localhost", body="anyone?", status=404)
    assert result.ok, result.describe()
    await fate_line(br.gw, fate="rejected", status="404", condition="service-unavailable")


async def test_server_bounce_reaches_sip_instead_of_2xx(bridge: Callable[..., Bridge]) -> None:
    """A served domain Prosody cannot reach (no s2s): its not-allowed bounce arrives while
    the SIP transaction is open, so the answer is the mapped 403, never a 2xx."""
    br = bridge(sip={"served_xmpp_domains": ["localhost", "far.localhost"]})
    result = await br.send(to="sip:juliet@far.localhost", body="over the wall", status=403)
    assert result.ok, result.describe()
    assert not any(r.startswith("SIP/2.0 2") for r in responses(result))
    await fate_line(br.gw, fate="rejected", status="403", condition="not-allowed")


async def test_retransmitted_udp_message_delivered_once(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    """The same datagram twice (same branch: a retransmission, RFC 3261 §17.2.2): the
    server transaction absorbs the second, the final response is repeated, one delivery.
    (A raw socket: sipp answers a repeated 200 by resending, which loops.)"""
    br = bridge()
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    call_id = f"retrans-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(15)
        port = sock.getsockname()[1]
        request = (
            f"MESSAGE sip:{juliet.jid.bare} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK-{call_id}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:romeo@{COMPONENT}>;tag=r1\r\n"
            f"To: <sip:{juliet.jid.bare}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 MESSAGE\r\n"
            "Content-Type: text/plain\r\n"
            "Content-Length: 9\r\n\r\n"
            "only once"
        ).encode()
        finals = []
        for _ in range(2):
            sock.sendto(request, (LOOPBACK, br.port))
            while True:
                data, _ = sock.recvfrom(65535)
                if not data.startswith(b"SIP/2.0 1"):
                    finals.append(data.split(b"\r\n", 1)[0])
                    break
    assert finals == [b"SIP/2.0 200 OK", b"SIP/2.0 200 OK"]
    await wait_stanza(juliet, lambda m: text_of(m) == "only once")
    # one more message behind it proves the stream was flushed past any duplicate
    result = await br.send(to=f"sip:{juliet.jid.bare}", body="marker")
    assert result.ok, result.describe()
    await wait_stanza(juliet, lambda m: text_of(m) == "marker")
    assert sum(1 for m in juliet.messages if text_of(m) == "only once") == 1
    assert br.gw.log_text().count(f"call_id={call_id}") == 1


async def test_link_down_gives_503_with_retry_after(bridge: Callable[..., Bridge]) -> None:
    br = bridge(
        wait_link=False,
        xmpp={"components": [{"domain": COMPONENT, "secret": "wrong-secret"}]},
    )
    result = await br.send(to="sip:nurse@localhost", body="nobody takes this", status=503)
    assert result.ok, result.describe()
    (resp,) = [r for r in responses(result) if r.startswith("SIP/2.0 503")]
    retry = header(resp, "Retry-After")
    assert retry is not None and int(retry) >= 1
    assert not any(r.startswith("SIP/2.0 2") for r in responses(result))


async def test_max_forwards_zero_is_483(bridge: Callable[..., Bridge]) -> None:
    br = bridge()
    result = await br.send(to="sip:nurse@localhost", body="looping", max_forwards=0, status=483)
    assert result.ok, result.describe()


async def test_untrusted_sender_claiming_bridged_identity_refused(
    bridge: Callable[..., Bridge],
) -> None:
    br = bridge(sip={"trusted_peers": []})
    result = await br.send(to="sip:nurse@localhost", body="spoof", status=403)
    assert result.ok, result.describe()


# -- XMPP -> SIP -----------------------------------------------------------------------------


def xmpp_message(
    client: XmppTestClient, to: str, *, body: str | None = None, **extra: Any
) -> Message:
    msg = client.xmpp.make_message(mto=JID(to), mbody=body)
    msg["id"] = extra.pop("id", secrets.token_hex(6))
    if "thread" in extra:
        msg["thread"] = extra.pop("thread")
    if "subject" in extra:
        msg["subject"] = extra.pop("subject")
    if "lang" in extra:
        msg.xml.set(XML_LANG, extra.pop("lang"))
    for child in extra.pop("children", ()):
        msg.xml.append(child)
    assert not extra
    return msg


async def test_xmpp_to_sip_table1_every_row(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory, sipp: Sipp
) -> None:
    """bare JID -> From with gr=resource, thread -> Call-ID, subject -> Subject,
    xml:lang -> Content-Language, body -> text/plain;charset=UTF-8, to -> Request-URI."""
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    with br.uas(port=uas_port) as uas:
        msg = xmpp_message(
            juliet,
            f"romeo@{COMPONENT}",
            body="Art thou not Romeo, and a Montague? — ů",
            thread="D9AA95FD-2BD5-46E2",
            subject="Question",
            lang="en",
        )
        msg.send()
        result = await asyncio.to_thread(uas.wait)
    assert result.ok, result.describe()
    (req,) = received_requests(result)
    assert req.startswith(f"MESSAGE sip:romeo@{COMPONENT} SIP/2.0")
    assert header(req, "From") is not None
    assert f"<sip:{juliet.jid.local}@localhost;gr=test>" in (header(req, "From") or "")
    assert header(req, "To") == f"<sip:romeo@{COMPONENT}>"
    assert header(req, "Call-ID") == "D9AA95FD-2BD5-46E2"
    assert header(req, "Subject") == "Question"
    assert header(req, "Content-Language") == "en"
    assert (header(req, "Content-Type") or "").lower() == "text/plain;charset=utf-8"
    assert header(req, "Contact") is None  # RFC 3428 §4
    # RFC 6993 / RFC 7081 §4: the sender's bare JID, for CUSAX clients
    assert header(req, "Call-Info") == f"<xmpp:{juliet.jid.local}@localhost>;purpose=impp"
    assert body_of(req).strip() == "Art thou not Romeo, and a Montague? — ů"
    await fate_line(br.gw, fate="delivered", stanza_id=msg["id"], call_id="D9AA95FD-2BD5-46E2")


async def test_xmpp_without_thread_gets_fresh_call_ids(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    with br.uas(port=uas_port, calls=2) as uas:
        juliet.send_message(f"romeo@{COMPONENT}", "one", mtype="normal")
        juliet.send_message(f"romeo@{COMPONENT}", "two", mtype="normal")
        result = await asyncio.to_thread(uas.wait)
    assert result.ok, result.describe()
    reqs = received_requests(result)
    assert [body_of(r).strip() for r in reqs] == ["one", "two"]  # serialised, in order
    call_ids = {header(r, "Call-ID") for r in reqs}
    assert len(call_ids) == 2 and None not in call_ids


async def test_large_message_goes_over_tcp(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    big = ("0123456789abcdef" * 320)[:5000]
    with br.uas(port=uas_port, transport="t1") as uas:
        juliet.send_message(f"romeo@{COMPONENT}", big, mtype="normal")
        result = await asyncio.to_thread(uas.wait)
    assert result.ok, result.describe()
    (req,) = received_requests(result)
    assert "SIP/2.0/TCP" in (header(req, "Via") or "")
    assert body_of(req).strip() == big


async def test_large_message_to_udp_only_target_is_policy_violation(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    bridge(sip={"routes": route_to(free_port(), "udp")})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    msg = xmpp_message(juliet, f"romeo@{COMPONENT}", body="x" * 5000)
    msg.send()
    err = await wait_stanza(juliet, lambda m: m["type"] == "error" and m["id"] == msg["id"])
    assert err.xml.find(f".//{{{NS_STANZAS}}}policy-violation") is not None


async def test_sip_errors_and_timeouts_reach_the_xmpp_sender(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    with br.uas(port=uas_port, status="404 Not Found") as uas:
        msg = xmpp_message(juliet, f"romeo@{COMPONENT}", body="are you there?")
        msg.send()
        err = await wait_stanza(juliet, lambda m: m["type"] == "error" and m["id"] == msg["id"])
        await asyncio.to_thread(uas.wait)
    assert err.xml.find(f".//{{{NS_STANZAS}}}item-not-found") is not None
    await fate_line(br.gw, fate="rejected", stanza_id=msg["id"], status="404")
    # nobody listens on the route's port: Timer F (64*T1) -> remote-server-timeout
    msg = xmpp_message(juliet, f"romeo@{COMPONENT}", body="into the void")
    msg.send()
    err = await wait_stanza(
        juliet, lambda m: m["type"] == "error" and m["id"] == msg["id"], timeout=30
    )
    assert err.xml.find(f".//{{{NS_STANZAS}}}remote-server-timeout") is not None


# -- chat states and receipts ----------------------------------------------------------------


def chat_state(msg: Message) -> str | None:
    for child in msg.xml:
        if child.tag.startswith(f"{{{NS_CHATSTATES}}}"):
            return str(child.tag.rpartition("}")[2])
    return None


def state_element(name: str) -> Any:
    import xml.etree.ElementTree as ET

    return ET.Element(f"{{{NS_CHATSTATES}}}{name}")


ISCOMPOSING_ACTIVE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
    "<state>active</state><contenttype>text/plain</contenttype><refresh>90</refresh>"
    "</isComposing>"
)


async def test_chat_states_gated_both_ways(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    """isComposing only to a SIP peer that has shown support, never after it answered 415;
    repeated SIP ``active`` collapse into one <composing/> (X85-04)."""
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    with br.uas(port=uas_port, calls=2, status="415 Unsupported Media Type") as uas:
        # romeo has shown nothing yet: juliet's typing is not sent to SIP
        xmpp_message(juliet, romeo, children=[state_element("composing")]).send()
        # romeo types: juliet sees <composing/> once, however often SIP refreshes it
        for _ in range(2):
            result = await br.send(
                to=f"sip:{juliet.jid.bare}",
                body=ISCOMPOSING_ACTIVE,
                content_type="application/im-iscomposing+xml",
            )
            assert result.ok, result.describe()
        shown = await wait_stanza(juliet, lambda m: chat_state(m) == "composing")
        assert shown.xml.get("type") == "chat" and shown["body"] == ""
        await fate_line(br.gw, fate="collapsed")
        # now juliet's typing goes to romeo, who answers 415: no more isComposing after it
        xmpp_message(juliet, romeo, children=[state_element("composing")]).send()
        await fate_line(br.gw, fate="rejected", kind="chat-state", status="415")
        xmpp_message(juliet, romeo, children=[state_element("paused")]).send()
        xmpp_message(juliet, romeo, body="content after the 415").send()
        result = await asyncio.to_thread(uas.wait)
    reqs = received_requests(result)
    types = [(header(r, "Content-Type") or "").split(";")[0] for r in reqs]
    assert types == ["application/im-iscomposing+xml", "text/plain"], reqs
    assert "<state>active</state>" in body_of(reqs[0])
    assert sum(1 for m in juliet.messages if chat_state(m) == "composing") == 1


def imdn_notification(sender: str, recipient: str, message_id: str, status: str) -> str:
    return (
        f"From: <{sender}>\nTo: <{recipient}>\nNS: imdn <urn:ietf:params:imdn>\n"
        f"imdn.Message-ID: n{secrets.token_hex(6)}\n\n"
        "Content-Type: message/imdn+xml\nContent-Disposition: notification\n\n"
        '<imdn xmlns="urn:ietf:params:xml:ns:imdn">'
        f"<message-id>{message_id}</message-id>"
        "<datetime>2024-01-02T03:04:05Z</datetime>"
        f"<delivery-notification><status><{status}/></status></delivery-notification></imdn>"
    )


async def test_receipts_both_ways(
    bridge: Callable[..., Bridge], xmpp_client: ClientFactory
) -> None:
    """XEP-0184 request -> IMDN positive-delivery request; IMDN delivered -> <received/>;
    and the reverse: an IMDN request from SIP -> <request/>; <received/> -> IMDN."""
    uas_port = free_port()
    br = bridge(sip={"routes": route_to(uas_port)})
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    romeo = f"romeo@{COMPONENT}"
    import xml.etree.ElementTree as ET

    # XMPP -> SIP with a receipt request
    with br.uas(port=uas_port) as uas:
        msg = xmpp_message(
            juliet,
            romeo,
            body="did you get this?",
            children=[ET.Element(f"{{{NS_RECEIPTS}}}request")],
        )
        msg.send()
        result = await asyncio.to_thread(uas.wait)
    (req,) = received_requests(result)
    assert (header(req, "Content-Type") or "").startswith("message/cpim")
    cpim_body = body_of(req)
    assert re.search(r"^imdn\.Disposition-Notification: positive-delivery", cpim_body, re.M)
    message_id = re.search(r"^imdn\.Message-ID: (\S+)", cpim_body, re.M)
    assert message_id is not None
    assert "did you get this?" in cpim_body
    # romeo's phone answers with an IMDN: juliet gets <received id=.../>
    result = await br.send(
        to=f"sip:{juliet.jid.bare}",
        body=imdn_notification(
            f"sip:{romeo}", f"sip:{juliet.jid.bare}", message_id.group(1), "delivered"
        ),
        content_type="message/cpim",
    )
    assert result.ok, result.describe()
    receipt = await wait_stanza(
        juliet, lambda m: m.xml.find(f"{{{NS_RECEIPTS}}}received") is not None
    )
    received = receipt.xml.find(f"{{{NS_RECEIPTS}}}received")
    assert received is not None and received.get("id") == msg["id"]
    assert str(JID(receipt["from"]).bare) == romeo

    # SIP -> XMPP with an IMDN request; juliet's receipt becomes an IMDN to romeo
    asked = (
        f"From: <sip:{romeo}>\nTo: <sip:{juliet.jid.bare}>\nNS: imdn <urn:ietf:params:imdn>\n"
        "imdn.Message-ID: Msg34jk324j\nDateTime: 2024-01-02T03:04:05Z\n"
        "imdn.Disposition-Notification: positive-delivery\n\n"
        "Content-Type: text/plain\n\nplease confirm"
    )
    with br.uas(port=uas_port) as uas:
        result = await br.send(to=f"sip:{juliet.jid.bare}", body=asked, content_type="message/cpim")
        assert result.ok, result.describe()
        got = await wait_stanza(juliet, lambda m: text_of(m) == "please confirm")
        assert got.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
        ack = juliet.xmpp.make_message(mto=JID(romeo))
        ack.xml.append(ET.Element(f"{{{NS_RECEIPTS}}}received", {"id": got["id"]}))
        ack.send()
        result = await asyncio.to_thread(uas.wait)
    (req,) = received_requests(result)
    imdn = body_of(req)
    assert "<message-id>Msg34jk324j</message-id>" in imdn
    assert "<delivered/>" in imdn and "Content-Disposition: notification" in imdn
