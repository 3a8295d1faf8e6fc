"""The INVITE leg of message sessions (issue 18, docs/sessions.md) against sipp.

A `SipEndpoint` on loopback runs in this process with the `SipDispatcher` and the
`SessionService`, as gateway/app.py wires them, and the test-only `FixedMedia`
(tests/harness/session_media.py: sipp checks SIP, not media). T1 = 50 ms, so the 2xx
retransmissions come at 50, 150, 350 ms... and 64*T1 is 3.2 s. The no-Media refusal of
the running gateway is in test_gateway_methods.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.bridge.dispatch import SipDispatcher
from gateway.bridge.session.service import SessionService
from gateway.config import DnsConfig, ListenerConfig, SessionsSection, SipConfig, SipTimers
from gateway.config import Transport as T
from gateway.resolver.resolver import Resolver
from gateway.sip.timers import TimerConfig
from gateway.sip.transport.endpoint import SipEndpoint
from tests.harness.ports import free_port
from tests.harness.session_media import FixedMedia
from tests.harness.sipp import Sipp, SippResult

pytestmark = pytest.mark.integration

T1 = 0.05
SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
MESSAGE_SDP = (
    "      v=0\n      o=sipp 1 1 IN IP4 127.0.0.1\n      s=-\n      c=IN IP4 127.0.0.1\n"
    "      t=0 0\n      m=message 7394 TCP/MSRP *\n      a=accept-types:text/plain\n"
)
AUDIO_SDP = (
    "      v=0\n      o=sipp 1 1 IN IP4 127.0.0.1\n      s=-\n      c=IN IP4 127.0.0.1\n"
    "      t=0 0\n      m=audio 7396 RTP/AVP 0\n      a=rtpmap:0 PCMU/8000\n"
)


@dataclass
class Rig:
    endpoint: SipEndpoint
    service: SessionService
    media: FixedMedia | None
    port: int

    @property
    def uri(self) -> str:
        return f"sip:juliet@127.0.0.1:{self.port}"

    def keys(self) -> dict[str, str]:
        return {"to_uri": self.uri, "from_uri": "sip:romeo@127.0.0.1"}


async def make_rig(media: FixedMedia | None, max_sessions: int = 10, t1: float = T1) -> Rig:
    port = free_port()
    sip = SipConfig(
        listeners=(
            ListenerConfig(T.UDP, "127.0.0.1", port),
            ListenerConfig(T.TCP, "127.0.0.1", port),
        ),
        timers=SipTimers(t1=t1, t2=4.0, t4=5.0),
    )
    dispatcher = SipDispatcher()
    endpoint = SipEndpoint(sip, dispatcher)
    service = SessionService(
        SessionsSection(max_sessions=max_sessions, retry_after=7),
        endpoint,
        Resolver(DnsConfig()),
        media=media,
        contact=f"sip:session@127.0.0.1:{port}",
        timers=TimerConfig(t1=t1, t2=4.0, t4=5.0),
    )
    dispatcher.add("INVITE", service.handle_invite)
    dispatcher.add("ACK", service.handle_ack)
    dispatcher.add("BYE", service.handle_bye)
    await endpoint.start()
    return Rig(endpoint, service, media, port)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await make_rig(FixedMedia())
    try:
        yield r
    finally:
        await r.service.stop()
        await r.endpoint.stop()


def fill(template: str, dest: Path, **fields: str) -> Path:
    text = (SCENARIOS / template).read_text(encoding="utf-8")
    for key, value in fields.items():
        text = text.replace(f"@@{key}@@", value)
    assert "@@" not in text, f"unfilled field in {template}"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / template
    path.write_text(text, encoding="utf-8")
    return path


async def run(
    sipp: Sipp, rig: Rig, scenario: str | Path, timeout: float = 20, transport: str = "u1"
) -> SippResult:
    return await asyncio.to_thread(
        sipp.run,
        scenario,
        remote=f"127.0.0.1:{rig.port}",
        keys=rig.keys(),
        timeout=timeout,
        transport=transport,
    )


# ---------------------------------------------------------------- refusals


async def test_non_sdp_body_is_415_with_accept(sipp: Sipp, rig: Rig, tmp_path: Path) -> None:
    scenario = fill(
        "session_invite_refused_uac.xml",
        tmp_path,
        CONTENT_TYPE="text/plain",
        BODY="      hello",
        STATUS="415",
        HEADER_RE="Accept: application/sdp",
    )
    result = await run(sipp, rig, scenario)
    assert result.ok, result.describe()
    assert rig.media is not None and rig.media.calls == []  # refused before any media
    assert len(rig.service) == 0


async def test_audio_only_offer_is_488_with_the_media_warning(
    sipp: Sipp, rig: Rig, tmp_path: Path
) -> None:
    scenario = fill(
        "session_invite_refused_uac.xml",
        tmp_path,
        CONTENT_TYPE="application/sdp",
        BODY=AUDIO_SDP,
        STATUS="488",
        HEADER_RE='Warning: 304 gateway "only message sessions"',
    )
    result = await run(sipp, rig, scenario)
    assert result.ok, result.describe()
    assert rig.media is not None
    (ended,) = [d for w, _, d in rig.media.calls if w == "ended"]
    assert ended == "refused" and len(rig.service) == 0


async def test_without_media_every_invite_is_488_not_enabled(sipp: Sipp, tmp_path: Path) -> None:
    r = await make_rig(None)
    try:
        scenario = fill(
            "session_invite_refused_uac.xml",
            tmp_path,
            CONTENT_TYPE="application/sdp",
            BODY=MESSAGE_SDP,
            STATUS="488",
            HEADER_RE='Warning: 304 gateway "message sessions not enabled"',
        )
        result = await run(sipp, r, scenario)
    finally:
        await r.endpoint.stop()
    assert result.ok, result.describe()


async def test_past_max_sessions_503_with_retry_after(sipp: Sipp, tmp_path: Path) -> None:
    r = await make_rig(FixedMedia(), max_sessions=0)
    try:
        scenario = fill(
            "session_invite_refused_uac.xml",
            tmp_path,
            CONTENT_TYPE="application/sdp",
            BODY=MESSAGE_SDP,
            STATUS="503",
            HEADER_RE="Retry-After: 7",
        )
        result = await run(sipp, r, scenario)
    finally:
        await r.endpoint.stop()
    assert result.ok, result.describe()


async def test_cancel_before_the_answer_is_487(sipp: Sipp, rig: Rig) -> None:
    assert rig.media is not None
    rig.media.hold = asyncio.Event()  # the answer never comes before the CANCEL
    ends: list[str] = []
    rig.service.on_end = ends.append  # what the composition root counts in metrics
    result = await run(sipp, rig, "session_invite_cancel_uac")
    assert result.ok, result.describe()
    (ended,) = [d for w, _, d in rig.media.calls if w == "ended"]
    assert ended == "cancelled" and ends == ["cancelled"]
    rig.media.hold.set()  # the late answer is dropped: nothing is sent, nothing is kept
    await asyncio.sleep(0)
    assert len(rig.service) == 0 and not rig.media.seen("started")


async def test_media_silent_for_64_t1_is_500(sipp: Sipp, rig: Rig, tmp_path: Path) -> None:
    assert rig.media is not None
    rig.media.hold = asyncio.Event()  # never set: the Media never answers
    scenario = fill(
        "session_invite_refused_uac.xml",
        tmp_path,
        CONTENT_TYPE="application/sdp",
        BODY=MESSAGE_SDP,
        STATUS="500",
        HEADER_RE="CSeq: 1 INVITE",
    )
    result = await run(sipp, rig, scenario)
    assert result.ok, result.describe()
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["refused"]
    assert len(rig.service) == 0


async def test_invite_with_a_content_length_past_its_body_is_400(rig: Rig) -> None:
    """A malformed INVITE is the SIP core's (RFC 3261 §18.3 over UDP): 400, no session."""
    invite = (
        f"INVITE {rig.uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbadlen\r\n"
        "From: <sip:romeo@127.0.0.1>;tag=r1\r\nTo: <sip:juliet@127.0.0.1>\r\n"
        "Call-ID: badlen@t\r\nCSeq: 1 INVITE\r\nContact: <sip:romeo@127.0.0.1:9>\r\n"
        "Content-Type: application/sdp\r\nContent-Length: 500\r\n\r\nv=0\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(sock, invite, ("127.0.0.1", rig.port))
        answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
    assert answer.startswith(b"SIP/2.0 400 "), answer
    assert rig.media is not None and rig.media.calls == [] and len(rig.service) == 0


# ---------------------------------------------------------------- sessions


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_invite_200_ack_bye(sipp: Sipp, tmp_path: Path, transport: str) -> None:
    """T1 = 500 ms here: sipp over TCP takes a retransmitted 2xx for an unexpected message
    (it expects none on a reliable transport; RFC 3261 §13.3.1.4 sends them anyway), so
    the ACK must come before the first retransmission."""
    rig = await make_rig(FixedMedia(), t1=0.5)
    try:
        scenario = fill("session_invite_bye_uac.xml", tmp_path, ACK_DELAY="0")
        result = await run(sipp, rig, scenario, transport=transport)
    finally:
        await rig.service.stop()
        await rig.endpoint.stop()
    assert result.ok, result.describe()
    assert rig.media is not None
    (call,) = rig.media.seen("started")
    assert call.role == "uas" and call.remote_uri == "sip:romeo@127.0.0.1"
    assert call.transport == ("udp" if transport == "u1" else "tcp")
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["bye-received"]
    assert "m=message 2855 TCP/MSRP" in result.messages  # the Media's answer in the 200
    assert len(rig.service) == 0


async def test_2xx_retransmitted_until_the_late_ack(sipp: Sipp, rig: Rig, tmp_path: Path) -> None:
    scenario = fill("session_invite_bye_uac.xml", tmp_path, ACK_DELAY="800")
    result = await run(sipp, rig, scenario)
    assert result.ok, result.describe()
    # 200 at 0, then at 50, 150, 350, 750 ms: at least 3 copies before the ACK at 800 ms
    before_ack = result.messages.split("ACK sip:")[0]
    assert before_ack.count("SIP/2.0 200 OK") >= 4, result.messages[-3000:]
    assert rig.endpoint.stats.responses_out >= 5
    assert rig.media is not None and len(rig.media.seen("started")) == 1


async def test_no_ack_ends_the_session_with_bye_after_64_t1(sipp: Sipp, rig: Rig) -> None:
    result = await run(sipp, rig, "session_invite_noack_uac")
    assert result.ok, result.describe()
    assert rig.media is not None
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["no-ack"]
    assert not rig.media.seen("started")
    assert result.messages.count("SIP/2.0 200 OK") >= 6  # retransmitted meanwhile
    assert "BYE sip:sipp@127.0.0.1" in result.messages  # to the remote target (Contact)


async def test_invite_without_offer_gets_ours_and_the_answer_from_the_ack(
    sipp: Sipp, rig: Rig
) -> None:
    result = await run(sipp, rig, "session_invite_nooffer_uac")
    assert result.ok, result.describe()
    assert rig.media is not None
    assert [w for w, _, _ in rig.media.calls] == ["offer", "accepted", "started", "ended"]
    (answer,) = [d for w, _, d in rig.media.calls if w == "accepted"]
    assert isinstance(answer, bytes) and b"m=message 7397" in answer
    assert "m=message 2855 TCP/MSRP" in result.messages  # our offer in the 200


async def test_gateway_hangs_up_with_bye(sipp: Sipp, rig: Rig) -> None:
    assert rig.media is not None
    media = rig.media
    run_task = asyncio.ensure_future(run(sipp, rig, "session_invite_hangup_uac"))
    (call,) = await media.wait_for("started")
    rig.service.hangup(call)
    result = await run_task
    assert result.ok, result.describe()
    assert [d for w, _, d in media.calls if w == "ended"] == ["bye-sent"]
    assert "CSeq: 1 BYE" in result.messages  # our first request in the dialog


async def test_stop_hangs_up_every_session(sipp: Sipp) -> None:
    r = await make_rig(FixedMedia())
    assert r.media is not None
    try:
        run_task = asyncio.ensure_future(run(sipp, r, "session_invite_hangup_uac"))
        await r.media.wait_for("started")
        await r.service.stop()
        result = await run_task
    finally:
        await r.endpoint.stop()
    assert result.ok, result.describe()
    assert [d for w, _, d in r.media.calls if w == "ended"] == ["bye-sent"]
    assert len(r.service) == 0


async def test_reinvite_answered_in_the_session(sipp: Sipp, rig: Rig) -> None:
    result = await run(sipp, rig, "session_invite_reinvite_uac")
    assert result.ok, result.describe()
    assert rig.media is not None
    (offer,) = [d for w, _, d in rig.media.calls if w == "reoffer"]
    assert isinstance(offer, bytes) and b"7395" in offer
    assert "o=gateway 1 2 IN IP4" in result.messages
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["bye-received"]


async def test_bye_for_no_dialog_is_481(sipp: Sipp, rig: Rig) -> None:
    result = await run(sipp, rig, "session_bye_481_uac")
    assert result.ok, result.describe()


# ---------------------------------------------------------------- the gateway invites


async def test_uac_session_with_a_sipp_uas(sipp: Sipp, rig: Rig) -> None:
    assert rig.media is not None
    port = free_port()
    with sipp.uas("session_uas_200", local_port=port) as uas:
        outcome = await asyncio.wait_for(
            rig.service.invite("sip:juliet@127.0.0.1", f"sip:bob@127.0.0.1:{port}"), 30
        )
        assert outcome.kind == "established" and outcome.status == 200, outcome
        (answer,) = [d for w, _, d in rig.media.calls if w == "accepted"]
        assert isinstance(answer, bytes) and b"m=message 7396" in answer
        rig.service.hangup(outcome.call)
        result = await asyncio.to_thread(uas.wait)
    assert result.ok, result.describe()
    assert "m=message 2855 TCP/MSRP" in result.messages  # our offer, from Media.offer
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["bye-sent"]


async def test_uac_cancel_goes_out_after_the_first_provisional(sipp: Sipp, rig: Rig) -> None:
    assert rig.media is not None
    port = free_port()
    with sipp.uas("session_uas_cancelled", local_port=port) as uas:
        task = asyncio.ensure_future(
            rig.service.invite("sip:juliet@127.0.0.1", f"sip:bob@127.0.0.1:{port}")
        )
        async with asyncio.timeout(30):
            while len(rig.service) == 0:  # the INVITE is out once the session is counted
                await asyncio.sleep(0.01)
        (call,) = rig.media.seen("offer")
        rig.service.cancel(call)  # before any 1xx: the CANCEL waits for the 180
        outcome = await asyncio.wait_for(task, 30)
        result = await asyncio.to_thread(uas.wait)
    assert (outcome.kind, outcome.status) == ("cancelled", 487), outcome
    assert result.ok, result.describe()
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["cancelled"]
    assert len(rig.service) == 0


async def test_uac_488_is_the_pager_fallback(sipp: Sipp, rig: Rig) -> None:
    assert rig.media is not None
    port = free_port()
    with sipp.uas("session_uas_488", local_port=port) as uas:
        outcome = await asyncio.wait_for(
            rig.service.invite("sip:juliet@127.0.0.1", f"sip:bob@127.0.0.1:{port}"), 30
        )
        result = await asyncio.to_thread(uas.wait)
    assert (outcome.kind, outcome.status) == ("fallback", 488), outcome
    assert result.ok, result.describe()
    assert [d for w, _, d in rig.media.calls if w == "ended"] == ["fallback"]
    assert len(rig.service) == 0
