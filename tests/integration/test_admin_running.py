"""The admin API of a running gateway process (real Prosody, sipp, a slixmpp client).

/healthz, /readyz, the token, /metrics values changing as a MESSAGE passes SIP -> XMPP,
the listings (links, a registration made by sipp), the runtime wire trace, and SIGHUP
reloading a TLS listener's certificate and the user file without dropping the link.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess, config_of
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp, SippResult
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.asyncio

TOKEN = "admin-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COMPONENT = "sip.localhost"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

REGISTER_UAC = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="REGISTER UAC">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[field0] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field1]@[field0]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[field0]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field1]@[local_ip]:[local_port]>
      Expires: 300
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
"""


def samples(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Admin:
    def __init__(self, proc: GatewayProcess) -> None:
        cfg = config_of(proc.config_path.read_text(encoding="utf-8"))
        self.url = f"http://{cfg['admin']['listen']}"
        self.sip_port = int(cfg["sip"]["listeners"][0]["port"])
        self.proc = proc

    async def get(self, path: str, *, auth: bool = True) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
            s.get(self.url + path, headers=AUTH if auth else {}) as r,
        ):
            body = await r.text()
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, body

    async def post(self, path: str, data: Any) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
            s.post(self.url + path, json=data, headers=AUTH) as r,
        ):
            return r.status, await r.json()

    async def metrics(self) -> Samples:
        status, text = await self.get("/metrics")
        assert status == 200
        return samples(text)

    async def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get("/readyz")
            if status == 200:
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout}s: {body}\n{self.proc.tail()}")
            await asyncio.sleep(0.1)


async def send_message(sipp: Sipp, admin: Admin, to: str, body: str) -> SippResult:
    return await asyncio.to_thread(
        sipp.run,
        "message_uac",
        remote=f"{LOOPBACK}:{admin.sip_port}",
        keys={"to_uri": to, "from_uri": f"sip:romeo@{COMPONENT}", "body": body},
        timeout=20,
    )


def start(gateway: Callable[..., GatewayProcess], **over: Any) -> Admin:
    sip = {"trusted_peers": ["127.0.0.1"], **over.pop("sip", {})}
    return Admin(gateway(sip=sip, admin={"token": TOKEN}, **over))


async def test_health_readiness_and_token(gateway: Callable[..., GatewayProcess]) -> None:
    admin = start(gateway)
    status, body = await admin.get("/healthz", auth=False)
    assert (status, body) == (200, {"status": "alive"})
    ready = await admin.wait_ready()
    assert ready["checks"]["xmpp"] is True
    assert ready["checks"]["sip"] is True
    assert ready["checks"]["accepting"] is True
    for path in ("/readyz", "/metrics", "/links", "/registrations", "/subscriptions", "/trace"):
        status, _ = await admin.get(path, auth=False)
        assert status == 401, path
    status, links = await admin.get("/links")
    assert status == 200
    assert [(row["domain"], row["state"]) for row in links["links"]] == [(COMPONENT, "up")]
    admin.proc.wait_for_log(r"admin request refused .*path=/metrics")


async def test_metrics_change_as_a_message_passes(
    gateway: Callable[..., GatewayProcess], xmpp_client: ClientFactory, sipp: Sipp
) -> None:
    admin = start(gateway)
    await admin.wait_ready()
    juliet = await xmpp_client(prefix="juliet")
    before = await admin.metrics()
    delivered = ("cpim_messages_total", (("direction", "sip_to_xmpp"), ("outcome", "delivered")))
    latency = ("cpim_message_handling_seconds_count", (("direction", "sip_to_xmpp"),))
    req_in = ("cpim_sip_messages_total", (("direction", "in"), ("kind", "request")))
    resp_out = ("cpim_sip_messages_total", (("direction", "out"), ("kind", "response")))
    assert before.get(delivered, 0) == 0
    assert before[("cpim_component_link_up", (("domain", COMPONENT),))] == 1
    assert before.get(("cpim_component_reconnects_total", (("domain", COMPONENT),)), 0) == 0

    result = await send_message(sipp, admin, f"sip:{juliet.jid.bare}", "metrics probe")
    assert result.ok, result.describe()
    got = await juliet.wait_message(lambda m: m["body"].strip() == "metrics probe", timeout=15)
    assert str(got["from"].bare) == f"romeo@{COMPONENT}"

    after = await admin.metrics()
    assert after[delivered] == before.get(delivered, 0) + 1
    assert after[latency] == before.get(latency, 0) + 1
    assert after[req_in] >= before[req_in] + 1
    assert after[resp_out] >= before[resp_out] + 1
    assert after[("cpim_sip_transactions_in_flight", ())] >= 0


async def test_registration_listing_and_wire_trace(
    gateway: Callable[..., GatewayProcess],
    xmpp_client: ClientFactory,
    sipp: Sipp,
    tmp_path: Path,
) -> None:
    admin = start(gateway)
    await admin.wait_ready()
    status, regs = await admin.get("/registrations")
    assert (status, regs["count"]) == (200, 0)
    scenario = tmp_path / "register.xml"
    scenario.write_text(REGISTER_UAC, encoding="utf-8")
    csv = tmp_path / "register.csv"
    csv.write_text(f"SEQUENTIAL\n{COMPONENT};mercutio\n", encoding="utf-8")
    result = await asyncio.to_thread(
        sipp.run,
        scenario,
        remote=f"{LOOPBACK}:{admin.sip_port}",
        extra_args=["-inf", str(csv)],
        timeout=20,
    )
    assert result.ok, result.describe()
    status, regs = await admin.get("/registrations")
    assert regs["count"] == 1
    row = regs["registrations"][0]
    assert row["aor"] == f"sip:mercutio@{COMPONENT}"
    assert row["contact"].startswith("sip:mercutio@127.0.0.1:")
    status, subs = await admin.get("/subscriptions")
    assert status == 200
    assert subs["count"] == len(subs["subscriptions"])

    # Wire trace: off by default, on through the API, off again.
    juliet = await xmpp_client(prefix="juliet")
    assert (await admin.get("/trace"))[1] == {"sip": False, "xmpp": False}
    assert (await admin.post("/trace", {"sip": True, "xmpp": True}))[1] == {
        "sip": True,
        "xmpp": True,
    }
    result = await send_message(sipp, admin, f"sip:{juliet.jid.bare}", "traced body 1")
    assert result.ok, result.describe()
    await juliet.wait_message(lambda m: m["body"].strip() == "traced body 1", timeout=15)
    admin.proc.wait_for_log(r"gateway\.wire\.sip: sip in .*wire=.*traced body 1")
    admin.proc.wait_for_log(r"gateway\.wire\.xmpp: xmpp out wire=.*traced body 1")
    assert (await admin.post("/trace", {"sip": False, "xmpp": False}))[1] == {
        "sip": False,
        "xmpp": False,
    }
    result = await send_message(sipp, admin, f"sip:{juliet.jid.bare}", "untraced body 2")
    assert result.ok, result.describe()
    await juliet.wait_message(lambda m: m["body"].strip() == "untraced body 2", timeout=15)
    log = admin.proc.log_text()
    assert "untraced body 2" not in log.split("wire trace switched trace=xmpp on=False")[-1]


# -- SIGHUP ----------------------------------------------------------------------------------


def make_cert(dest: Path, cn: str) -> tuple[Path, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cert, key = dest / f"{cn}.crt", dest / f"{cn}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "2", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text(encoding="ascii"))


async def test_sighup_reloads_certificate_and_users_keeping_the_link(
    gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    require_binary("openssl")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    one_cert, one_key = make_cert(tmp_path / "one", "one.test")
    two_cert, two_key = make_cert(tmp_path / "two", "two.test")
    live_cert.write_bytes(one_cert.read_bytes())
    live_key.write_bytes(one_key.read_bytes())
    users = tmp_path / "users.toml"
    users.write_text(f'[users."romeo@{COMPONENT}"]\nha1_md5 = "{"0" * 32}"\n', encoding="utf-8")
    udp, tls = free_port(), free_port()
    admin = start(
        gateway,
        sip={
            "listeners": [
                {"transport": "udp", "address": LOOPBACK, "port": udp},
                {
                    "transport": "tls",
                    "address": LOOPBACK,
                    "port": tls,
                    "certificate": str(live_cert),
                    "private_key": str(live_key),
                },
            ]
        },
        registrar={"users_file": str(users)},
    )
    await admin.wait_ready()
    assert await asyncio.to_thread(served_certificate, tls) == der_of(one_cert)

    live_cert.write_bytes(two_cert.read_bytes())
    live_key.write_bytes(two_key.read_bytes())
    users.write_text(
        users.read_text(encoding="utf-8")
        + f'[users."mercutio@{COMPONENT}"]\nha1_md5 = "{"1" * 32}"\n',
        encoding="utf-8",
    )
    admin.proc.send_signal(signal.SIGHUP)
    admin.proc.wait_for_log(r"configuration reloaded .*certificates=1 users=2")
    assert await asyncio.to_thread(served_certificate, tls) == der_of(two_cert)

    # A broken key is refused and the running certificate stays.
    live_key.write_bytes(one_key.read_bytes())  # does not match the second certificate
    admin.proc.send_signal(signal.SIGHUP)
    admin.proc.wait_for_log(r"certificate reload failed, keeping the old one")
    admin.proc.wait_for_log(r"configuration reloaded .*certificates=0 users=2")
    assert await asyncio.to_thread(served_certificate, tls) == der_of(two_cert)

    # The component link was never dropped.
    _, links = await admin.get("/links")
    assert [(r["state"], r["failures"]) for r in links["links"]] == [("up", 0)]
    assert "xmpp link sip.localhost down" not in admin.proc.log_text()
    m = await admin.metrics()
    assert m.get(("cpim_component_reconnects_total", (("domain", COMPONENT),)), 0) == 0
    assert admin.proc.terminate(timeout=30) == 0


async def test_link_loss_shows_in_readiness_links_and_reconnect_metrics(
    gateway: Callable[..., GatewayProcess], prosody_factory: Callable[..., ProsodyServer]
) -> None:
    server = prosody_factory(components={COMPONENT: "s3cret-own"})
    admin = start(
        gateway,
        xmpp={
            "port": server.component_port,
            "components": [{"domain": COMPONENT, "secret": "s3cret-own"}],
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
        },
    )
    await admin.wait_ready()
    up = ("cpim_component_link_up", (("domain", COMPONENT),))
    reconnects = ("cpim_component_reconnects_total", (("domain", COMPONENT),))
    first = await admin.metrics()
    assert first[up] == 1
    assert first.get(reconnects, 0) == 0

    server.kill()
    deadline = time.monotonic() + 30
    while (status := (await admin.get("/readyz"))[0]) == 200:
        assert time.monotonic() < deadline, "still ready with the XMPP server gone"
        await asyncio.sleep(0.1)
    status, body = await admin.get("/readyz")
    assert status == 503
    assert body["checks"]["xmpp"] is False
    down = await admin.metrics()
    assert down[up] == 0
    _, links = await admin.get("/links")
    assert links["links"][0]["state"] in ("connecting", "waiting")

    await asyncio.to_thread(server.start)
    await admin.wait_ready()
    again = await admin.metrics()
    assert again[up] == 1
    assert again[reconnects] == 1
