"""Linphone (liblinphone 5.1, Debian `linphone-cli`) as romeo, a real XMPP client as juliet,
through the gateway process and the session Prosody (tests/harness/linphone.py).

One gateway for the module, with the registrar's user file (romeo, MD5 and SHA-256) and
no trusted peers: every request from Linphone proves itself (Digest, then the registered
flow). `registrar.available_without_publish` is off, so what juliet sees of romeo comes
from his PUBLISH. Each test starts its own Linphone (fresh HOME, so a fresh instance id
and GRUU) and its own XMPP accounts; Linphone unregisters when it is stopped.

- REGISTER with Digest, GRUU handed back (RFC 5627), a wrong password refused;
- MESSAGE both ways: text/plain from Linphone (`linphone-daemon`'s `message` always
  sends text/plain), message/cpim with an IMDN request towards it;
- presence both ways: juliet watches romeo (his PUBLISH, his unregistration), romeo
  (`linphonec`, juliet in his friend list) watches juliet, also through the gateway's
  resource list server (`[sip] rls_uri`: one RFC 5367 SUBSCRIBE, RLMI NOTIFYs; issue 24);
- store-and-forward (docs/offline.md): messages stored while romeo has no binding reach
  Linphone in order, with their Date, when it registers; a file link goes to Linphone as
  RCS FT-HTTP (its REGISTER lists it in Accept; docs/pager.md "Files").
isComposing: the daemon cannot make Linphone compose, and the gateway sends isComposing
only to a peer that showed support (docs/pager.md), which Linphone then never did: the
test checks that juliet's <composing/> is held, not sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.linphone import Account, Linphone, Linphonec, LinphoneDaemon
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ROMEO = f"romeo@{COMPONENT}"
LIMIT = 20.0
NS_RECEIPTS = "urn:xmpp:receipts"


@pytest.fixture(scope="module")
def gateway(
    _prosody_session: ProsodyServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, int]]:
    """One gateway process for the module: (process, its UDP port)."""
    prosody = _prosody_session
    if not prosody.running:
        prosody.start()
    d = tmp_path_factory.mktemp("gw-linphone")
    users = d / "users.toml"
    users.write_text(format_user(hash_password(ROMEO, None, "romeo")))
    users.chmod(0o600)
    port = free_port()
    config = gateway_config(
        gateway={"state_dir": str(d / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users), "available_without_publish": False},
        admin={"enabled": False},
    )
    gw = GatewayProcess(config, d / "gateway", log_level="info")
    gw.start()
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        yield gw, port
    finally:
        if gw.running:
            gw.kill()


LinphoneFactory = Callable[..., Any]


@pytest.fixture
async def linphone(
    gateway: tuple[GatewayProcess, int], tmp_path: Path
) -> AsyncIterator[LinphoneFactory]:
    """await make(kind=LinphoneDaemon, password="romeo", friends=()) -> romeo's Linphone."""
    gw, port = gateway
    started: list[Linphone] = []

    async def make(
        kind: type[Linphone] = LinphoneDaemon,
        *,
        password: str = "romeo",
        friends: tuple[str, ...] = (),
        rls_uri: str | None = None,
    ) -> Linphone:
        account = Account(f"sip:{ROMEO}", (LOOPBACK, port), password)
        lp = kind(tmp_path / f"linphone-{len(started)}", account, friends=friends, rls_uri=rls_uri)
        started.append(lp)
        return await lp.start()

    try:
        yield make
    finally:
        for lp in started:
            await lp.stop()
        for lp in started:  # the next test starts with romeo unregistered
            source = rf"source=udp:127\.0\.0\.1:{lp.sip_port} "
            if re.search(source + r"added=\w", gw.log_text()):
                await asyncio.to_thread(
                    gw.wait_for_log, source + r"added=\"\" .*removed=\S+ bindings=0", LIMIT
                )


async def registered_daemon(make: LinphoneFactory) -> LinphoneDaemon:
    lp = await make()
    assert isinstance(lp, LinphoneDaemon)
    await lp.wait_registered()
    return lp


async def gateway_line(gw: GatewayProcess, pattern: str) -> str:
    found = await asyncio.to_thread(gw.wait_for_log, pattern, LIMIT)
    return found.group(0)


def bare(jid: object) -> str:
    return str(jid).partition("/")[0]


# -- REGISTER -----------------------------------------------------------------------


async def test_linphone_registers_with_digest_and_gets_a_gruu(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory
) -> None:
    gw, _ = gateway
    lp = await registered_daemon(linphone)
    line = await gateway_line(
        gw,
        rf"registration aor=sip:{re.escape(ROMEO)} via=digest "
        rf"source=udp:127\.0\.0\.1:{lp.sip_port} added=(\S+) .*",
    )
    gruu_id = re.search(r"added=(\S+)", line)
    assert gruu_id is not None
    # RFC 5627 §5: the 200 OK hands Linphone its public GRUU (Linphone sent +sip.instance).
    sip = lp.sip_log()
    assert re.search(r"^Authorization: +Digest .*algorithm=SHA-256", sip, re.MULTILINE)
    assert "+sip.instance=" in sip
    assert f'pub-gruu="sip:{ROMEO};gr={gruu_id.group(1)}"' in sip, lp.tail()


async def test_linphone_with_a_wrong_password_is_refused(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory
) -> None:
    gw, _ = gateway
    lp = await linphone(password="montague")
    assert isinstance(lp, LinphoneDaemon)
    await lp.wait_registered("LinphoneRegistrationFailed")
    line = await gateway_line(gw, r"request refused .*reason=auth-failed.*")
    assert "method=REGISTER" in line and f"sip:{ROMEO}" in line


# -- MESSAGE ------------------------------------------------------------------------


async def test_linphone_and_xmpp_client_exchange_messages(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    gw, _ = gateway
    juliet = await xmpp_client(prefix="juliet")
    juliet_sip = f"sip:{bare(juliet.jid)}"
    lp = await registered_daemon(linphone)

    # SIP -> XMPP, text/plain from the registered flow; Linphone sees the 200 (Delivered).
    sent = await lp.send_message(juliet_sip, "by a name I know not, ô")
    got = await juliet.wait_message(lambda m: m["body"] == "by a name I know not, ô", LIMIT)
    assert bare(got["from"]) == ROMEO
    await lp.wait_message_state(sent, "LinphoneChatMessageStateDelivered")

    # XMPP -> SIP over romeo's registered flow; the From is juliet's mapped address,
    # her resource as a GRUU (`<sip:juliet@localhost;gr=test>`).
    juliet.send_message(ROMEO, "wherefore art thou")
    received = await lp.wait_message("wherefore art thou")
    assert (received.get("From") or "").strip("<>").partition(";")[0] == juliet_sip

    # With a receipt request the gateway sends message/cpim asking for an IMDN.
    juliet.send_raw(
        f"<message to='{ROMEO}' type='chat' id='lp-r1'><body>with a receipt</body>"
        f"<request xmlns='{NS_RECEIPTS}'/></message>"
    )
    await lp.wait_message("with a receipt")
    assert "imdn.Disposition-Notification: positive-delivery" in lp.sip_log()

    # isComposing towards Linphone: held, Linphone never showed it handles isComposing.
    juliet.send_raw(
        f"<message to='{ROMEO}' type='chat' id='lp-c1'>"
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    await gateway_line(gw, r"message direction=xmpp_to_sip fate=held stanza_id=lp-c1 .*")


async def test_linphone_delivery_notification_becomes_a_receipt(
    linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    lp = await registered_daemon(linphone)
    juliet.send_raw(
        f"<message to='{ROMEO}' type='chat' id='lp-r2'><body>tell me you got it</body>"
        f"<request xmlns='{NS_RECEIPTS}'/></message>"
    )
    await lp.wait_message("tell me you got it")
    receipt = await juliet.wait_message(
        lambda m: m.xml.find(f"{{{NS_RECEIPTS}}}received[@id='lp-r2']") is not None, LIMIT
    )
    assert bare(receipt["from"]) == ROMEO


# -- presence -----------------------------------------------------------------------


def _from_romeo(kind: str | None) -> Callable[[Any], bool]:
    return lambda p: bare(p["from"]) == ROMEO and p.xml.get("type") == kind


async def test_xmpp_client_sees_linphone_publish_and_unregister(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    gw, _ = gateway
    juliet = await xmpp_client(prefix="juliet")
    juliet.xmpp.auto_authorize = None
    lp = await registered_daemon(linphone)
    await gateway_line(gw, rf"publication aor=sip:{re.escape(ROMEO)} kind=initial .*")

    juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribe")
    await gateway_line(gw, rf"hosted watcher asks aor=sip:{re.escape(ROMEO)} .*")
    # romeo approves with the `/allow` command message (docs/presence.md).
    await lp.send_message(f"sip:{bare(juliet.jid)}", "/allow")
    await gateway_line(gw, rf"hosted watcher approved aor=sip:{re.escape(ROMEO)} .*")
    await juliet.wait_presence(_from_romeo(None), LIMIT)  # his PIDF: basic open

    # Going offline: Linphone withdraws its PUBLISH (Expires: 0), then unregisters. (The
    # daemon's `unregister` alone keeps the publication, which lives on: RFC 3903.)
    await lp.stop()
    await gateway_line(gw, rf"publication aor=sip:{re.escape(ROMEO)} kind=remove .*")
    await gateway_line(
        gw, rf"registration aor=sip:{re.escape(ROMEO)} .*:{lp.sip_port} added=\"\" .*bindings=0"
    )
    await juliet.wait_presence(_from_romeo("unavailable"), LIMIT)


async def test_linphone_watches_an_xmpp_client(
    linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    juliet = await xmpp_client(prefix="juliet")
    juliet.xmpp.auto_authorize = None
    juliet_sip = f"sip:{bare(juliet.jid)}"
    lp = await linphone(Linphonec, friends=(juliet_sip,))
    assert isinstance(lp, Linphonec)
    await juliet.wait_presence(_from_romeo("subscribe"), LIMIT)
    juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribed")
    juliet.xmpp.send_presence(pto=ROMEO)
    seen = await lp.wait_friend_status(juliet_sip, "Online")
    juliet.xmpp.send_presence(pshow="away")
    seen = await lp.wait_friend_status(juliet_sip, "Away", after=seen + 1)
    juliet.xmpp.send_presence(ptype="unavailable")
    await lp.wait_friend_status(juliet_sip, "Offline", after=seen + 1)


async def test_linphone_friend_list_through_the_list_server(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    """Issue 24: with `[sip] rls_uri` Linphone subscribes to its whole friend list with one
    SUBSCRIBE (RFC 5367, `Supported: eventlist`); the gateway's list server subscribes to
    juliet on romeo's behalf and juliet's presence reaches Linphone in RLMI NOTIFYs
    (multipart/related), which it shows as the friend's status."""
    gw, _ = gateway
    juliet = await xmpp_client(prefix="juliet")
    juliet.xmpp.auto_authorize = None
    juliet_sip = f"sip:{bare(juliet.jid)}"
    lp = await linphone(Linphonec, friends=(juliet_sip,), rls_uri=f"sip:rls@{COMPONENT}")
    assert isinstance(lp, Linphonec)
    await gateway_line(gw, rf"list subscribed owner=sip:{re.escape(ROMEO)} .*members=1")
    await juliet.wait_presence(_from_romeo("subscribe"), LIMIT)
    juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribed")
    juliet.xmpp.send_presence(pto=ROMEO)
    seen = await lp.wait_friend_status(juliet_sip, "Online")
    juliet.xmpp.send_presence(pshow="away")
    await lp.wait_friend_status(juliet_sip, "Away", after=seen + 1)
    log = lp.sip_log()
    assert "Require: recipient-list-subscribe" in log, lp.tail()
    assert 'multipart/related;type="application/rlmi+xml"' in log, lp.tail()
    assert "list subscription refused" not in gw.log_text()


# -- store-and-forward and file links (issue 17) --------------------------------------


async def test_linphone_registering_gets_stored_messages_in_order(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    """docs/offline.md: juliet writes while romeo has no binding (stored, a headline
    notice each); Linphone registers and receives them once each, in order, each with
    the Date it was stored (RFC 3261 §20.17)."""
    gw, _ = gateway
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    texts = [f"while you slept {i}" for i in range(1, 4)]
    for text in texts:
        juliet.send_message(ROMEO, text)
        notice = await juliet.wait_message(lambda m: m["type"] == "headline", LIMIT)
        assert "message stored" in str(notice["body"]), gw.tail()
    lp = await registered_daemon(linphone)
    for text in texts:
        await lp.wait_message(text)
    got = [e.get("Content") for e in lp.events if e.value == "message-received"]
    assert got == [f'"{t}"' for t in texts], lp.tail()
    # each MESSAGE Linphone took carried the original time as a Date header
    sip = lp.sip_log()
    for text in texts:
        request = sip[: sip.index(f"\n{text}")]
        request = request[request.rindex("MESSAGE sip:") :]
        assert re.search(r"^Date: \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT\r?$", request, re.M)
    await asyncio.sleep(1.0)  # nothing delivered twice
    again = [e.get("Content") for e in lp.events if e.value == "message-received"]
    assert again == got
    assert not [m for m in juliet.messages if m["type"] == "error"]


async def test_linphone_gets_a_file_link_as_ft_http(
    gateway: tuple[GatewayProcess, int], linphone: LinphoneFactory, xmpp_client: ClientFactory
) -> None:
    """Linphone lists FT-HTTP in its REGISTER's Accept, so juliet's XEP-0066 link goes to
    it as one RCS FT-HTTP MESSAGE (docs/pager.md "Files"), which it takes as a file
    transfer message."""
    gw, _ = gateway
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    lp = await registered_daemon(linphone)
    assert "Accept: application/vnd.gsma.rcs-ft-http+xml" in lp.sip_log()
    url = f"https://127.0.0.1:{free_port()}/upload/x/rose.jpg"
    juliet.send_raw(
        f"<message to='{ROMEO}' id='lp-f1'><body>{url}</body>"
        f"<x xmlns='jabber:x:oob'><url>{url}</url></x></message>"
    )
    await gateway_line(gw, r"message direction=xmpp_to_sip fate=delivered .*stanza_id=lp-f1 .*")
    sip = lp.sip_log()
    at = sip.index("Content-Type: application/vnd.gsma.rcs-ft-http+xml")
    assert f'url="{url}"' in sip[at:] and "<file-name>rose.jpg</file-name>" in sip[at:]
    event = await lp.until(
        lambda: next((e for e in lp.events if e.value == "message-received"), None),
        "the file transfer message",
    )
    assert (event.get("Content") or "").startswith('"<?xml'), event  # the daemon prints it raw
    # liblinphone keeps it in its message database as a file transfer content
    await lp.until(
        lambda: (
            "Insert new content type in database: `application/vnd.gsma.rcs-ft-http+xml`"
            in lp.sip_log()
            or None
        ),
        "the file transfer content stored",
    )
