"""SDP offer/answer for MSRP media (RFC 3264, RFC 4975 §8, RFC 4145, RFC 6135, RFC 4572).

Entry points, all pure (`offered_tls(offer)` first tells which URI scheme to give the
session):

- `make_offer(local, ...) -> (bytes, Offer)`: one `m=message <port> TCP[/TLS]/MSRP *`
  stream with a=accept-types, a=accept-wrapped-types, a=path, a=setup:actpass (RFC 6135
  §4.2.2 "MUST use actpass" when reachable), a=max-size and, with TLS, a=fingerprint.
  Usable streams must carry an a=fingerprint when TLS goes straight to the peer (a
  one-URI path); a path through relays need not.
- `answer_offer(offer_bytes, local) -> Answer | Refusal`: the first usable message stream
  is accepted; every other m-line (audio, video, a second message stream, an unknown
  proto) is refused with port 0 (RFC 3264 §6). No usable stream: `Refusal(488, warning)`
  (RFC 4975 §8.6 "SHOULD return a SIP 488"); a body that is not SDP: `Refusal(400)`.
- `parse_answer(answer_bytes, offer) -> Negotiated | Refusal`.

Connection roles (RFC 6135 §4.2): no a=setup, or "holdconn" (which MUST be ignored), means
the RFC 4975 default: the offerer is active. An answerer of "actpass" picks, "passive"
by default (§4.2.2: SHOULD when not behind a NAT; `LocalMedia.prefer_active` overrides),
of "active" is passive, of "passive" is active. "actpass" in an answer is refused.

Stream usability: proto TCP/MSRP or TCP/TLS/MSRP (the latter only when we have TLS), the
single format "*" (§8.1), an a=path of MSRP URIs whose scheme agrees with the proto
(msrps with TLS), an a=accept-types with at least one type we take. Types match per §8.6:
"*" and "type/*" wildcards, parameters ignored, case-insensitive.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final, Literal, TypeAlias

from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.message import parse_path
from gateway.msrp.uri import MsrpUri
from gateway.sdp.model import Media, SdpError, SessionDescription, parse_sdp

__all__ = [
    "PROTO_TCP",
    "PROTO_TLS",
    "Answer",
    "Fingerprint",
    "LocalMedia",
    "Negotiated",
    "Offer",
    "Refusal",
    "Setup",
    "answer_offer",
    "fingerprint_of",
    "make_offer",
    "offered_tls",
    "parse_answer",
    "type_accepted",
]

PROTO_TCP: Final = "TCP/MSRP"
PROTO_TLS: Final = "TCP/TLS/MSRP"
Setup: TypeAlias = Literal["active", "passive"]
# RFC 3261 §20.43 warning codes used here
W_TRANSPORT: Final = 302  # Incompatible transport protocol
W_MEDIA_TYPE: Final = 304  # Media type not available
W_FORMAT: Final = 305  # Incompatible media format
W_PARAMETER: Final = 307  # Session description parameter not understood
WARNINGS: Final = {
    W_TRANSPORT: "Incompatible transport protocol",
    W_MEDIA_TYPE: "Media type not available",
    W_FORMAT: "Incompatible media format",
    W_PARAMETER: "Session description parameter not understood",
}
_HASHES: Final = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256",
                  "sha-384": "sha384", "sha-512": "sha512"}  # fmt: skip
_fp_re = re.compile(r"([A-Za-z0-9\-]+) ((?:[0-9A-Fa-f]{2}:)*[0-9A-Fa-f]{2})")
_type_re = re.compile(r"\*|[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+/[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+(;.*)?")


@dataclass(frozen=True)
class Fingerprint:
    """a=fingerprint:<hash-func> <hex:hex...> (RFC 4572 §5); `value` upper case."""

    hash_func: str
    value: str

    def __str__(self) -> str:
        return f"{self.hash_func} {self.value}"

    def matches(self, der: bytes) -> bool:
        """Whether a DER certificate has this fingerprint (an unknown hash never matches)."""
        name = _HASHES.get(self.hash_func.lower())
        if name is None:
            return False
        return hmac.compare_digest(fingerprint_of(der, self.hash_func).value, self.value)


def fingerprint_of(der: bytes, hash_func: str = "sha-256") -> Fingerprint:
    digest = hashlib.new(_HASHES[hash_func.lower()], der).hexdigest().upper()
    return Fingerprint(
        hash_func.lower(), ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    )


def _parse_fingerprint(value: str) -> Fingerprint:
    m = _fp_re.fullmatch(value.strip())
    if m is None:
        raise SdpError(f"malformed a=fingerprint {value[:80]!r}", 488, W_PARAMETER)
    return Fingerprint(m[1].lower(), m[2].upper())


@dataclass(frozen=True)
class LocalMedia:
    """Our side of a stream. `path` is our a=path (relay URIs first, ours last, RFC 4976
    §5.2); `tls` offers/accepts TCP/TLS/MSRP with `fingerprint` (required with TLS when
    the path has no relay)."""

    path: tuple[MsrpUri, ...]
    address: str  # for o= and c=
    accept_types: tuple[str, ...] = ("message/cpim", "text/plain")
    accept_wrapped_types: tuple[str, ...] = ("text/plain", "message/imdn+xml",
                                             "application/im-iscomposing+xml")  # fmt: skip
    max_size: int | None = None
    tls: bool = False
    fingerprint: Fingerprint | None = None
    prefer_active: bool = False  # answer actpass with active (RFC 6135 §4.2.2: behind a NAT)
    session_id: int = 0  # o= sess-id and sess-version (RFC 4566 §5.2)
    version: int = 0


@dataclass(frozen=True)
class Negotiated:
    """The agreed stream: what the transport needs (`MsrpSession.connect`)."""

    index: int  # m-line position
    remote_path: tuple[MsrpUri, ...]
    setup: Setup  # OUR role: active connects, passive waits
    tls: bool
    accept_types: tuple[str, ...]  # what the peer takes (RFC 4975 §8.6: we MUST NOT send others)
    accept_wrapped_types: tuple[str, ...]
    max_size: int | None  # the peer's a=max-size (a hint, §8.6)
    fingerprints: tuple[Fingerprint, ...]  # the peer's, to check its certificate (§14.2)

    def may_send(self, content_type: str, wrapped: bool = False) -> bool:
        types = self.accept_types + (self.accept_wrapped_types if wrapped else ())
        return type_accepted(content_type, types)


@dataclass(frozen=True)
class Offer:
    sdp: SessionDescription
    local: LocalMedia
    index: int = 0


@dataclass(frozen=True)
class Answer:
    body: bytes  # application/sdp
    stream: Negotiated


@dataclass(frozen=True)
class Refusal:
    """Not acceptable: answer the INVITE with `status` and, when set, a Warning header
    `warning` (RFC 3261 §20.43: `399`-style code and text)."""

    status: int
    reason: str
    warning: int | None = None

    @property
    def warning_text(self) -> str | None:
        return None if self.warning is None else WARNINGS.get(self.warning, self.reason)


def _media_type(entry: str) -> str:
    return entry.split(";", 1)[0].strip().lower()


def type_accepted(content_type: str, accepted: Iterable[str]) -> bool:
    """RFC 4975 §8.6: "*", "type/*" wildcards; parameters do not take part."""
    want = _media_type(content_type)
    major = want.split("/", 1)[0]
    for entry in accepted:
        t = _media_type(entry)
        if t in ("*", want) or (t.endswith("/*") and t[:-2] == major):
            return True
    return False


def _format_list(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = tuple(value.split())
    for item in items:
        if _type_re.fullmatch(item) is None:
            raise SdpError(f"malformed format entry {item[:60]!r} (RFC 4975 §8.6)", 488, W_FORMAT)
    return items


def _common(ours: Iterable[str], theirs: Iterable[str]) -> bool:
    theirs = tuple(theirs)
    return any(type_accepted(t, theirs) for t in ours if t != "*") or ("*" in ours and bool(theirs))


def _setup(value: str | None) -> str | None:
    if value is None or value.strip() == "holdconn":  # RFC 6135 §4.2.1: MUST ignore
        return None
    v = value.strip()
    if v not in ("active", "passive", "actpass"):
        raise SdpError(f"unknown a=setup:{v[:20]}", 488, W_PARAMETER)
    return v


def _stream(sdp: SessionDescription, index: int, media: Media, tls_ok: bool) -> Negotiated:
    """Read one offered/answered message stream or raise SdpError (488 + warning)."""
    if media.proto.upper() not in (PROTO_TCP, PROTO_TLS):
        raise SdpError(f"transport {media.proto} is not MSRP", 488, W_TRANSPORT)
    tls = media.proto.upper() == PROTO_TLS
    if tls and not tls_ok:
        raise SdpError("TCP/TLS/MSRP without a TLS configuration", 488, W_TRANSPORT)
    if media.formats != ("*",):
        raise SdpError("MSRP streams have the single format * (RFC 4975 §8.1)", 488, W_FORMAT)
    path_value = media.attribute("path")
    if not path_value:
        raise SdpError("message stream without a=path (RFC 4975 §8.1)", 488, W_PARAMETER)
    try:
        path = parse_path(" ".join(path_value.split()))
    except RemoteProtocolError as exc:
        raise SdpError(f"bad a=path: {exc.message}", 488, W_PARAMETER) from None
    if any(u.secure != tls for u in path):
        raise SdpError("a=path scheme disagrees with the m-line proto (RFC 4975 §6)", 488,
                       W_TRANSPORT)  # fmt: skip
    accept = _format_list(media.attribute("accept-types"))
    if not accept:
        raise SdpError("message stream without a=accept-types (RFC 4975 §8.6)", 488, W_FORMAT)
    wrapped = _format_list(media.attribute("accept-wrapped-types"))
    max_size = media.attribute("max-size")
    if max_size is not None and not max_size.strip().isdigit():
        raise SdpError(f"bad a=max-size:{max_size[:20]}", 488, W_PARAMETER)
    prints = media.attribute_values("fingerprint") or sdp.attribute_values("fingerprint")
    fingerprints = tuple(_parse_fingerprint(v) for v in prints)
    if tls and not fingerprints and len(path) == 1:
        # §14.2/§14.4: peer to peer, the fingerprint is the only check of a self-signed
        # certificate; a path through relays starts at a relay, which is checked by its
        # certificate's name instead (RFC 4976 §9.2; its §11 example has no fingerprint)
        raise SdpError("TLS stream without a=fingerprint (RFC 4975 §14.2)", 488, W_PARAMETER)
    return Negotiated(
        index,
        path,
        "passive",  # the caller decides the role from a=setup
        tls,
        accept,
        wrapped,
        None if max_size is None else int(max_size.strip()[:18]),
        fingerprints,
    )


def _origin(local: LocalMedia) -> str:
    kind = "IP6" if ":" in local.address else "IP4"
    return f"- {local.session_id} {local.version} IN {kind} {local.address}"


def _connection(local: LocalMedia) -> str:
    return f"IN {'IP6' if ':' in local.address else 'IP4'} {local.address}"


def _our_media(local: LocalMedia, setup: str) -> Media:
    if local.tls and local.fingerprint is None and len(local.path) == 1:
        raise ValueError("a direct TLS stream needs our certificate's fingerprint")
    attrs: list[tuple[str, str | None]] = [("accept-types", " ".join(local.accept_types))]
    if local.accept_wrapped_types:
        attrs.append(("accept-wrapped-types", " ".join(local.accept_wrapped_types)))
    if local.max_size is not None:
        attrs.append(("max-size", str(local.max_size)))
    attrs.append(("path", " ".join(map(str, local.path))))
    attrs.append(("setup", setup))
    if local.tls and local.fingerprint is not None:
        attrs.append(("fingerprint", str(local.fingerprint)))
    port = local.path[-1].port or 9
    if setup == "active":
        port = 9  # RFC 4145 §4 / RFC 6135 §4.2.2: "the port number value should be 9"
    return Media("message", port, PROTO_TLS if local.tls else PROTO_TCP, ("*",),
                 attributes=tuple(attrs))  # fmt: skip


def make_offer(local: LocalMedia) -> tuple[bytes, Offer]:
    """Our offer (RFC 6135 §4.2.2: actpass) and the state `parse_answer` needs."""
    sdp = SessionDescription(
        _origin(local), "-", _connection(local), media=(_our_media(local, "actpass"),)
    )
    return sdp.serialize(), Offer(sdp, local)


def offered_tls(offer: bytes) -> bool | None:
    """Whether the offer's first message stream is TCP/TLS/MSRP (True) or TCP/MSRP (False);
    None when it has none or does not parse. Lets the caller make a session with the right
    URI scheme (msrps with TLS, RFC 4975 §6) before `answer_offer`."""
    try:
        sdp = parse_sdp(offer)
    except SdpError:
        return None
    for media in sdp.media:
        if media.media == "message" and media.port != 0:
            proto = media.proto.upper()
            if proto in (PROTO_TCP, PROTO_TLS):
                return proto == PROTO_TLS
    return None


def answer_offer(offer: bytes, local: LocalMedia) -> Answer | Refusal:
    """Accept the first usable message stream, refuse the others (module docs)."""
    try:
        sdp = parse_sdp(offer)
    except SdpError as exc:
        return Refusal(exc.status, exc.message, exc.warning)
    chosen: Negotiated | None = None
    problem: SdpError | None = None
    answer_media: list[Media] = []
    for i, media in enumerate(sdp.media):
        if chosen is not None or media.media != "message" or media.port == 0:
            answer_media.append(media.rejected())
            continue
        try:
            stream = _stream(sdp, i, media, local.tls)
            if not _common(local.accept_types, stream.accept_types):
                raise SdpError("no common accept-types (RFC 4975 §8.6)", 488, W_FORMAT)
            offered = _setup(media.attribute("setup"))
        except SdpError as exc:
            problem = problem or exc
            answer_media.append(media.rejected())
            continue
        ours: Setup
        if offered is None or offered == "active":
            ours = "passive"  # RFC 4975: the offerer connects
        elif offered == "passive":
            ours = "active"
        else:
            ours = "active" if local.prefer_active else "passive"
        chosen = replace(stream, setup=ours)
        answer_media.append(_our_media(local, ours))
    if chosen is None:
        if problem is not None:
            return Refusal(problem.status, problem.message, problem.warning)
        return Refusal(488, "no message stream offered (RFC 4975 §8)", W_MEDIA_TYPE)
    answer = SessionDescription(_origin(local), "-", _connection(local), media=tuple(answer_media))
    return Answer(answer.serialize(), chosen)


def parse_answer(answer: bytes, offer: Offer) -> Negotiated | Refusal:
    """The peer's answer to `make_offer`'s offer; a refused or broken stream is a Refusal
    (the SIP side ends the session: RFC 3264 §6, with BYE after the ACK)."""
    try:
        sdp = parse_sdp(answer)
        if len(sdp.media) != len(offer.sdp.media):
            raise SdpError("answer m-lines do not match the offer (RFC 3264 §6)", 488, W_PARAMETER)
        media = sdp.media[offer.index]
        if media.port == 0:
            raise SdpError("the peer refused the message stream", 488, W_MEDIA_TYPE)
        if media.media != "message":
            raise SdpError("answer m-line is not the offered message stream", 488, W_MEDIA_TYPE)
        if media.proto.upper() != offer.sdp.media[offer.index].proto.upper():
            raise SdpError("answer changed the transport (RFC 3264 §6)", 488, W_TRANSPORT)
        stream = _stream(sdp, offer.index, media, offer.local.tls)
        if not _common(offer.local.accept_types, stream.accept_types):
            raise SdpError("no common accept-types (RFC 4975 §8.6)", 488, W_FORMAT)
        answered = _setup(media.attribute("setup"))
        if answered == "actpass":
            raise SdpError("a=setup:actpass in an answer (RFC 4145 §4.1)", 488, W_PARAMETER)
    except SdpError as exc:
        return Refusal(exc.status, exc.message, exc.warning)
    return replace(stream, setup="passive" if answered == "active" else "active")
