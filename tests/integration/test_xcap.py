"""XCAP (RFC 4825) against the gateway PROCESS over real HTTP: aiohttp's client with
its Digest middleware, and curl --digest, authenticated against the registrar's user file.

resource-lists and pres-rules are created, read, modified and deleted; wrong ETags get
412, bad selectors 404/400, oversized bodies 413, another user's documents 403, no
credentials 401. Documents survive a gateway restart (SQLite state). Finally a
pres-rules document decides a real XMPP subscription (slixmpp user on Prosody) to a
hosted SIP user: `allow` approves at once, `block` refuses, with no /allow or /deny.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_admin_running import make_cert

pytestmark = pytest.mark.integration

DOMAIN = "sip.localhost"
ALICE, BOB = f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}
MAX = 8192
LIMIT = 30.0
LISTS = b"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="friends">
    <entry uri="sip:carol@example.com"><display-name>Carol</display-name></entry>
  </list>
</resource-lists>
"""
RL = "application/resource-lists+xml"
PR = "application/auth-policy+xml"
EL = "application/xcap-el+xml"


def pres_rules(*rules: tuple[str, str]) -> bytes:
    body = "".join(
        f'<cr:rule id="r{n}"><cr:conditions><cr:identity><cr:one id="{who}"/></cr:identity>'
        f"</cr:conditions><cr:actions><sub-handling>{handling}</sub-handling></cr:actions>"
        "</cr:rule>"
        for n, (who, handling) in enumerate(rules)
    )
    return (
        '<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
        f'xmlns:cr="urn:ietf:params:xml:ns:common-policy">{body}</cr:ruleset>'
    ).encode()


def config(tmp_path: Path, port: int, xcap: dict[str, Any] | None = None, **overrides: Any) -> str:
    users = tmp_path / "users.toml"
    users.write_text(
        "".join(
            format_user(hash_password(f"{u}@{DOMAIN}", None, pw)) for u, pw in PASSWORDS.items()
        )
    )
    users.chmod(0o600)
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        registrar={"users_file": str(users)},
        xcap={"enabled": True, "host": LOOPBACK, "port": port, "max_document_size": MAX}
        | (xcap or {}),
        admin={"enabled": False},
        **overrides,
    )


def start(conf: str, workdir: Path) -> GatewayProcess:
    gw = GatewayProcess(conf, workdir, log_level="info")
    gw.start()
    gw.wait_for_log("xcap server listening", timeout=LIMIT)
    return gw


def doc_url(port: int, auid: str, owner: str = ALICE) -> str:
    return f"http://{LOOPBACK}:{port}/xcap/{auid}/users/{owner}/index"


def session(user: str | None) -> aiohttp.ClientSession:
    if user is None:
        return aiohttp.ClientSession()
    digest = aiohttp.DigestAuthMiddleware(user, PASSWORDS[user])
    return aiohttp.ClientSession(middlewares=(digest,))


async def test_xcap_over_http_with_aiohttp_digest(tmp_path: Path) -> None:
    port = free_port()
    gw = start(config(tmp_path, port), tmp_path / "gw")
    lists = doc_url(port, "resource-lists")
    try:
        async with session(None) as anon:
            async with anon.get(lists) as r:
                assert r.status == 401
                assert r.headers.getall("WWW-Authenticate")[0].startswith("Digest ")
            async with anon.get(f"http://{LOOPBACK}:{port}/xcap/xcap-caps/global/index") as r:
                caps = await r.read()  # public: what the server supports
                assert r.status == 200 and b"<auid>pres-rules</auid>" in caps
        async with session("alice") as alice:
            async with alice.put(lists, data=LISTS, headers={"Content-Type": RL}) as r:
                assert r.status == 201
                etag = r.headers["ETag"]
            async with alice.get(lists) as r:
                assert (r.status, await r.read(), r.headers["ETag"]) == (200, LISTS, etag)
            friends = "/~~/resource-lists/list%5B@name=%22friends%22%5D"
            entry = lists + friends + "/entry%5B@uri=%22sip:dave@example.com%22%5D"
            new = b'<entry uri="sip:dave@example.com"/>'
            stale = {"Content-Type": EL, "If-Match": '"not-the-etag"'}
            async with alice.put(entry, data=new, headers=stale) as r:
                assert r.status == 412
            async with alice.put(
                entry, data=new, headers={"Content-Type": EL, "If-Match": etag}
            ) as r:
                assert r.status == 201
                assert r.headers["ETag"] != etag
            async with alice.get(entry) as r:
                assert r.status == 200 and r.headers["Content-Type"] == EL
                assert etree.fromstring(await r.read()).get("uri") == "sip:dave@example.com"
            async with alice.put(entry, data=b"<entry", headers={"Content-Type": EL}) as r:
                assert r.status == 409
                assert r.headers["Content-Type"] == "application/xcap-error+xml"
                assert b"<not-xml-frag" in await r.read()
            async with alice.get(lists + "/~~/resource-lists/list%5B") as r:
                assert r.status == 400
            async with alice.get(lists + "/~~/resource-lists/list%5B@name=%22none%22%5D") as r:
                assert r.status == 404
            async with alice.get(doc_url(port, "no-such-auid")) as r:
                assert r.status == 404
            big = LISTS.replace(b"Carol", b"C" * MAX)
            async with alice.put(lists, data=big, headers={"Content-Type": RL}) as r:
                assert r.status == 413
            async with alice.delete(entry) as r:
                assert r.status == 200
            rules = doc_url(port, "pres-rules")
            async with alice.put(
                rules, data=pres_rules((BOB, "allow")), headers={"Content-Type": PR}
            ) as r:
                assert r.status == 201
            async with alice.put(rules, data=LISTS, headers={"Content-Type": PR}) as r:
                assert r.status == 409  # not a pres-rules document: it stays as it was
            async with alice.get(rules) as r:
                assert r.status == 200 and b"allow" in await r.read()
            async with alice.delete(rules) as r:
                assert r.status == 200
            async with alice.get(rules) as r:
                assert r.status == 404
            async with alice.get(doc_url(port, "resource-lists", BOB)) as r:
                assert r.status == 403  # bob's documents
        async with session("bob") as bob:
            async with bob.get(lists) as r:
                assert r.status == 403
            async with bob.put(lists, data=LISTS, headers={"Content-Type": RL}) as r:
                assert r.status == 403
        wrong = aiohttp.DigestAuthMiddleware("alice", "wrong password")
        async with aiohttp.ClientSession(middlewares=(wrong,)) as s, s.get(lists) as r:
            assert r.status == 401
        assert "xcap authentication failed" in gw.log_text()
        assert "xcap request for another user's documents" in gw.log_text()

        gw.terminate()  # documents survive a restart, ETags too
        gw = start(config(tmp_path, port), tmp_path / "gw-2")
        async with session("alice") as alice, alice.get(lists) as r:
            assert r.status == 200 and b"sip:carol@example.com" in await r.read()
            assert b"sip:dave@example.com" not in await r.read()
    finally:
        gw.terminate()


async def roster_until(
    client: XmppTestClient, jid: str, wanted: Callable[[str, bool], bool]
) -> None:
    """Poll the client's roster item for `jid` until `wanted(subscription, pending_out)`."""
    async with asyncio.timeout(LIMIT):
        while True:
            await client.xmpp.get_roster(timeout=LIMIT)
            item = client.xmpp.client_roster[jid]
            if wanted(item["subscription"], bool(item["pending_out"])):
                return
            await asyncio.sleep(0.2)


def curl(*args: str) -> tuple[int, str]:
    """Status code and body of one curl request."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def test_xcap_with_curl_digest(tmp_path: Path) -> None:
    require_binary("curl")
    port = free_port()
    gw = start(config(tmp_path, port), tmp_path / "gw")
    doc = tmp_path / "lists.xml"
    doc.write_bytes(LISTS)
    url = doc_url(port, "resource-lists")
    alice = ("--digest", "-u", f"alice:{PASSWORDS['alice']}")
    try:
        assert curl(url)[0] == 401
        code, _ = curl(
            *alice, "-X", "PUT", "-H", f"Content-Type: {RL}", "--data-binary", f"@{doc}", url
        )
        assert code == 201
        code, body = curl(*alice, url)
        assert code == 200 and "sip:carol@example.com" in body
        name = url + "/~~/resource-lists/list%5B@name=%22friends%22%5D/@name"
        assert curl(*alice, name) == (200, "friends")
        code, _ = curl(
            *alice,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/xcap-att+xml",
            "-H",
            'If-Match: "nope"',
            "--data-binary",
            "buddies",
            name,
        )
        assert code == 412
        code, _ = curl(
            *alice,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/xcap-att+xml",
            "--data-binary",
            "buddies",
            name,
        )
        assert code == 200
        assert curl(*alice, name)[0] == 404  # the list is now named "buddies"
        bob = ("--digest", "-u", f"bob:{PASSWORDS['bob']}")
        assert curl(*bob, url)[0] == 403
        assert curl(*alice, "-X", "DELETE", url)[0] == 200
        assert curl(*alice, url)[0] == 404
    finally:
        gw.terminate()


async def test_pres_rules_decide_an_xmpp_subscription(
    prosody: ProsodyServer,
    xmpp_account: object,
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    port = free_port()
    conf = config(
        tmp_path,
        port,
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": DOMAIN, "secret": prosody.components[DOMAIN]}],
        },
        sip={"served_xmpp_domains": [prosody.domain]},
    )
    gw = start(conf, tmp_path / "gw")
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(DOMAIN)} up", timeout=LIMIT)
        friend: Account = xmpp_account("juliet")  # type: ignore[operator]
        stranger: Account = xmpp_account("eve")  # type: ignore[operator]
        rules = pres_rules((f"sip:{friend.jid}", "allow"), (f"sip:{stranger.jid}", "block"))
        async with session("alice") as alice:
            put = alice.put(doc_url(port, "pres-rules"), data=rules, headers={"Content-Type": PR})
            async with put as r:
                assert r.status == 201
        juliet = await xmpp_client(friend)
        eve = await xmpp_client(stranger)
        target = f"alice@{DOMAIN}"
        for client in (juliet, eve):
            client.xmpp.auto_authorize = None
            client.xmpp.auto_subscribe = False
            client.xmpp.send_presence(pto=target, ptype="subscribe")
        # nobody sent /allow or /deny: the document decided, and the rosters show it
        await roster_until(juliet, target, lambda sub, pending: sub in ("to", "both"))
        await roster_until(eve, target, lambda sub, pending: sub == "none" and not pending)
        await juliet.wait_presence(lambda p: p["from"].bare == target, LIMIT)  # announced
        log = gw.log_text()
        assert re.search(r"pres-rules decision.*verdict=allow", log)
        assert re.search(r"pres-rules decision.*verdict=block", log)
        assert "hosted watcher approved" in log
    finally:
        gw.terminate()


def test_xcap_over_https(tmp_path: Path) -> None:
    require_binary("openssl")
    require_binary("curl")
    cert, key = make_cert(tmp_path / "pki", "xcap.test")
    port = free_port()
    tls = {"certificate": str(cert), "private_key": str(key)}
    gw = start(config(tmp_path, port, xcap=tls), tmp_path / "gw")
    url = f"https://xcap.test:{port}/xcap/pres-rules/users/{ALICE}/index"
    alice = ("--digest", "-u", f"alice:{PASSWORDS['alice']}")
    verified = (*alice, "--cacert", str(cert), "--resolve", f"xcap.test:{port}:{LOOPBACK}")
    doc = tmp_path / "rules.xml"
    doc.write_bytes(pres_rules((BOB, "allow")))
    try:
        assert "xcap server listening url=https://" in gw.log_text()
        put = ("-X", "PUT", "-H", f"Content-Type: {PR}", "--data-binary", f"@{doc}")
        assert curl(*verified, *put, url)[0] == 201
        assert curl(*verified, url) == (200, doc.read_text())
        plain = subprocess.run(
            ["curl", "-sS", "--max-time", "10", *verified, url.replace("https://", "http://")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert plain.returncode != 0  # TLS only: a plain request gets no HTTP answer
    finally:
        gw.terminate()
