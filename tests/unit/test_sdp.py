"""gateway/sdp: RFC 4566 parsing and RFC 3264 offer/answer for MSRP streams (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.msrp.uri import MsrpUri, parse_uri
from gateway.sdp.model import MAX_MEDIA, MAX_SDP, SdpError, parse_sdp
from gateway.sdp.msrp import (
    Answer,
    Fingerprint,
    LocalMedia,
    Negotiated,
    Refusal,
    answer_offer,
    fingerprint_of,
    make_offer,
    parse_answer,
    type_accepted,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sdp"
ME = MsrpUri.make("192.0.2.9", 2855, "gw1234abcd")
ME_TLS = MsrpUri.make("192.0.2.9", 2856, "gw1234abcd", scheme="msrps")
FP = fingerprint_of(b"our certificate")
LOCAL = LocalMedia(path=(ME,), address="192.0.2.9")
LOCAL_TLS = LocalMedia(path=(ME_TLS,), address="192.0.2.9", tls=True, fingerprint=FP)


def _v(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def _answer(offer: bytes, local: LocalMedia = LOCAL) -> Answer:
    result = answer_offer(offer, local)
    assert isinstance(result, Answer), result
    return result


@pytest.mark.parametrize("name", sorted(p.name for p in VECTORS.glob("*.sdp")))
def test_every_vector_parses_and_round_trips(name: str) -> None:
    sdp = parse_sdp(_v(name))
    again = parse_sdp(sdp.serialize())
    assert again == sdp


def test_rfc4975_fig7_fields() -> None:
    sdp = parse_sdp(_v("rfc4975_fig7.sdp"))
    assert sdp.origin == "alice 2890844526 2890844527 IN IP4 alice.example.com"
    assert sdp.name == " -" and sdp.connection == "IN IP4 alice.example.com"
    (m,) = sdp.media
    assert (m.media, m.port, m.proto, m.formats) == ("message", 7394, "TCP/MSRP", ("*",))
    assert m.attribute("path") == "msrp://alice.example.com:7394/2s93i9ek2a;tcp"
    assert sdp.serialize() == _v("rfc4975_fig7.sdp")


@pytest.mark.parametrize(
    ("offer", "path"),
    [
        ("rfc4975_fig7.sdp", "msrp://alice.example.com:7394/2s93i9ek2a;tcp"),
        ("rfc4975_fig9.sdp", "msrp://alice.example.com:7394/2s93i93idj;tcp"),
        ("rfc4975_s8_8_offer.sdp", "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"),
        ("rfc4975_fig1_offer.sdp", "msrp://atlanta.example.com:7654/jshA7weztas;tcp"),
        ("rfc4976_s11_offer.sdp", "msrp://a.example.com:1234/agic456;tcp"),
    ],
)
def test_rfc_offers_are_answered_passive(offer: str, path: str) -> None:
    """No a=setup: RFC 4975's default, the offerer connects (RFC 6135 §4.2)."""
    answer = _answer(_v(offer))
    assert answer.stream.remote_path == (parse_uri(path),)
    assert answer.stream.setup == "passive" and not answer.stream.tls
    (m,) = parse_sdp(answer.body).media
    assert m.port == 2855 and m.proto == "TCP/MSRP" and m.formats == ("*",)
    assert m.attribute("path") == str(ME)
    assert m.attribute("setup") == "passive"
    assert m.attribute("accept-types") == "message/cpim text/plain"
    assert m.attribute("accept-wrapped-types") is not None


def test_rfc4976_answer_with_relay_path_parses() -> None:
    _, offer = make_offer(LOCAL_TLS)
    # no fingerprint: the path starts at a relay, checked by its certificate's name
    got = parse_answer(_v("rfc4976_s11_answer.sdp"), offer)
    assert isinstance(got, Negotiated) and got.fingerprints == ()
    fixed = _v("rfc4976_s11_answer.sdp") + f"a=fingerprint:{FP}\r\n".encode()
    got = parse_answer(fixed, offer)
    assert isinstance(got, Negotiated)
    assert [str(u) for u in got.remote_path] == [
        "msrps://relay.example.com:9000/hjdhfha;tcp",
        "msrps://bob.example.com:1234/fuige;tcp",
    ]
    assert got.setup == "active" and got.tls and got.fingerprints == (FP,)
    assert got.accept_types == ("message/cpim", "text/plain")


def test_rfc4975_fig19_tls_offer() -> None:
    assert isinstance(answer_offer(_v("rfc4975_fig19_tls.sdp"), LOCAL), Refusal)
    bare = b"".join(
        line for line in _v("rfc4975_fig19_tls.sdp").splitlines(keepends=True)
        if not line.startswith(b"a=fingerprint")
    )  # fmt: skip
    refused = answer_offer(bare, LOCAL_TLS)  # peer to peer TLS needs it (§14.2)
    assert isinstance(refused, Refusal) and refused.warning == 307
    answer = _answer(_v("rfc4975_fig19_tls.sdp"), LOCAL_TLS)
    assert answer.stream.tls
    assert answer.stream.fingerprints == (
        Fingerprint("sha-1", "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB"),
    )
    (m,) = parse_sdp(answer.body).media
    assert m.proto == "TCP/TLS/MSRP" and m.attribute("fingerprint") == str(FP)
    assert m.attribute("path") == str(ME_TLS)


def test_setup_roles() -> None:
    assert _answer(_v("rfc4145_s7_1_msrp_passive.sdp")).stream.setup == "active"
    actpass = _v("rfc6135_actpass_offer.sdp")
    assert _answer(actpass).stream.setup == "passive"  # RFC 6135 §4.2.2 SHOULD
    prefer = LocalMedia(path=(ME,), address="192.0.2.9", prefer_active=True)
    active = _answer(actpass, prefer)
    assert active.stream.setup == "active"
    (m,) = parse_sdp(active.body).media
    assert m.attribute("setup") == "active" and m.port == 9  # RFC 4145 §4
    holdconn = actpass.replace(b"a=setup:actpass", b"a=setup:holdconn")
    assert _answer(holdconn).stream.setup == "passive"  # RFC 6135 §4.2.1: ignored
    weird = actpass.replace(b"a=setup:actpass", b"a=setup:sideways")
    refusal = answer_offer(weird, LOCAL)
    assert isinstance(refusal, Refusal) and refusal.status == 488


def test_offer_and_answers() -> None:
    body, offer = make_offer(LOCAL)
    (m,) = parse_sdp(body).media
    assert m.attribute("setup") == "actpass" and m.port == 2855
    passive = parse_answer(_v("rfc4145_s7_2_answer_passive.sdp"), offer)
    assert isinstance(passive, Negotiated) and passive.setup == "active"
    assert passive.remote_path == (parse_uri("msrp://192.0.2.1:54321/ans;tcp"),)
    active = parse_answer(_v("rfc6135_answer_active.sdp"), offer)
    assert isinstance(active, Negotiated) and active.setup == "passive"
    legacy = parse_answer(_v("rfc4975_fig10.sdp"), offer)
    assert isinstance(legacy, Negotiated) and legacy.setup == "active"  # offerer connects
    bad = _v("rfc6135_answer_active.sdp").replace(b"setup:active", b"setup:actpass")
    assert isinstance(parse_answer(bad, offer), Refusal)
    refused = _v("rfc4975_fig10.sdp").replace(b"message 8493", b"message 0")
    r = parse_answer(refused, offer)
    assert isinstance(r, Refusal) and r.status == 488


def test_two_ends_agree() -> None:
    """make_offer -> answer_offer -> parse_answer: exactly one side is active."""
    peer_uri = MsrpUri.make("192.0.2.7", 7000, "peer77abc")
    peer = LocalMedia(path=(peer_uri,), address="192.0.2.7", accept_types=("text/plain",))
    for prefer in (False, True):
        body, offer = make_offer(LOCAL)
        answer = _answer(body, LocalMedia(**{**peer.__dict__, "prefer_active": prefer}))
        ours = parse_answer(answer.body, offer)
        assert isinstance(ours, Negotiated)
        assert {ours.setup, answer.stream.setup} == {"active", "passive"}
        assert ours.remote_path == (peer_uri,) and answer.stream.remote_path == (ME,)
        assert ours.may_send("text/plain") and not ours.may_send("message/cpim")


def test_audio_video_refused_with_488_and_warning() -> None:
    r = answer_offer(_v("audio_video_only.sdp"), LOCAL)
    assert r == Refusal(488, "no message stream offered (RFC 4975 §8)", 304)
    assert r.warning_text == "Media type not available"
    image = answer_offer(_v("rfc4145_s7_1_image.sdp"), LOCAL)
    assert isinstance(image, Refusal) and image.status == 488


def test_audio_rejected_with_port_zero_next_to_message() -> None:
    answer = _answer(_v("audio_and_message.sdp"))
    audio, message = parse_sdp(answer.body).media
    assert (audio.media, audio.port, audio.proto, audio.formats) == ("audio", 0, "RTP/AVP", ("0",))
    assert message.port == 2855 and answer.stream.index == 1
    assert answer.stream.max_size == 4096
    assert answer.stream.accept_wrapped_types == ("text/plain",)
    assert answer.stream.may_send("text/plain", wrapped=True)
    assert not answer.stream.may_send("text/plain")


def test_second_message_stream_rejected() -> None:
    body = _v("rfc4975_fig7.sdp")
    tail = body[body.index(b"m=") :].replace(b"2s93i9ek2a", b"second9999")
    answer = _answer(body + tail)
    first, second = parse_sdp(answer.body).media
    assert first.port == 2855 and second.port == 0 and second.formats == ("*",)


@pytest.mark.parametrize(
    ("change", "status", "warning"),
    [
        ((b"accept-types:text/plain", b"accept-types:image/png"), 488, 305),
        ((b"a=accept-types:text/plain\r\n", b""), 488, 305),
        ((b"a=path:msrp://alice.example.com:7394/2s93i9ek2a;tcp\r\n", b""), 488, 307),
        ((b"a=path:msrp://alice", b"a=path:http://alice"), 488, 307),
        ((b"TCP/MSRP *", b"TCP/MSRP text/plain"), 488, 305),
        ((b"TCP/MSRP", b"UDP/MSRP"), 488, 302),
        ((b"TCP/MSRP", b"TCP/TLS/MSRP"), 488, 302),
        ((b"v=0", b"v=1"), 400, None),
        ((b"s= -\r\n", b""), 400, None),
        ((b"m=message 7394", b"m=message 99999"), 400, None),
        ((b"a=accept-types", b"a=accept types"), 400, None),
        ((b"t=0 0", b"T=0 0"), 400, None),
    ],
)
def test_bad_offers(change: tuple[bytes, bytes], status: int, warning: int | None) -> None:
    offer = _v("rfc4975_fig7.sdp").replace(*change)
    r = answer_offer(offer, LOCAL)
    assert isinstance(r, Refusal), r
    assert (r.status, r.warning) == (status, warning)


def test_scheme_must_agree_with_proto() -> None:
    tls = _v("rfc4975_fig19_tls.sdp").replace(b"msrps://", b"msrp://")
    r = answer_offer(tls, LOCAL_TLS)
    assert isinstance(r, Refusal) and r.warning == 302


def test_bounds() -> None:
    with pytest.raises(SdpError):
        parse_sdp(b"v=0\r\n" + b"a=x\r\n" * (MAX_SDP // 5))
    head = b"v=0\r\no=- 0 0 IN IP4 h\r\ns=-\r\nt=0 0\r\n"
    with pytest.raises(SdpError, match="media"):
        parse_sdp(head + b"m=audio 1 RTP/AVP 0\r\n" * (MAX_MEDIA + 1))
    with pytest.raises(SdpError, match="UTF-8"):
        parse_sdp(head + b"s=\xff\r\n")
    assert parse_sdp(head.replace(b"\r\n", b"\n")).origin == "- 0 0 IN IP4 h"  # LF only


def test_types() -> None:
    assert type_accepted("text/plain;charset=utf-8", ["TEXT/PLAIN"])
    assert type_accepted("text/html", ["text/*"]) and type_accepted("a/b", ["*"])
    assert not type_accepted("text/html", ["message/cpim", "image/*"])


def test_fingerprints() -> None:
    fp = fingerprint_of(b"cert", "sha-1")
    assert fp.matches(b"cert") and not fp.matches(b"other")
    assert Fingerprint("md2", fp.value).matches(b"cert") is False
    assert len(fingerprint_of(b"cert").value) == 32 * 3 - 1


FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SAMPLES = [p.read_bytes() for p in sorted(VECTORS.glob("*.sdp"))]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:
            del data[at : at + draw(st.integers(1, 20))]
        elif op == 1:
            data[at:at] = draw(st.binary(max_size=12))
        elif op == 2:
            data[at:at] = draw(
                st.sampled_from([b"\r\n", b"a=setup:", b"m=", b" ", b":", b"\n\n", b"*", b"/"])
            )
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@FUZZ
@given(mutated())
def test_fuzz_answer_offer(data: bytes) -> None:
    """Only Answer or Refusal comes back; an Answer's SDP parses and mirrors the m-lines."""
    for local in (LOCAL, LOCAL_TLS):
        result = answer_offer(data, local)
        assert isinstance(result, Answer | Refusal)
        if isinstance(result, Refusal):
            assert result.status in (400, 488)
            continue
        offered = parse_sdp(data).media
        answered = parse_sdp(result.body).media
        assert [m.media for m in answered] == [m.media for m in offered]
        assert sum(m.port != 0 for m in answered) == 1


@FUZZ
@given(mutated())
def test_fuzz_parse_answer(data: bytes) -> None:
    _, offer = make_offer(LOCAL)
    assert isinstance(parse_answer(data, offer), Negotiated | Refusal)


def test_offered_tls() -> None:
    from gateway.sdp.msrp import offered_tls

    assert offered_tls(_v("rfc4975_fig19_tls.sdp")) is True
    assert offered_tls(_v("audio_and_message.sdp")) is False
    assert offered_tls(_v("audio_video_only.sdp")) is None
    assert offered_tls(b"not sdp") is None
