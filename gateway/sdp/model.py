"""SDP session descriptions (RFC 4566): the lines we need, parsed and serialized, bounded.

    session = v= o= s= [i=] [u=] *e= *p= [c=] *b= 1*(t= *r=) [z=] [k=] *a= *media
    media   = m= [i=] *c= *b= [k=] *a=

`parse_sdp(data)` is strict about what an answer depends on (v=0 first, the o= and m=
field counts, `<type>=<value>` lines with a lowercase letter type, UTF-8, port numbers)
and liberal about the rest: lines it does not need are kept as written, LF alone ends a
line as well as CRLF (§5: "SHOULD also accept"), order within a section is not enforced.
Bounds: `MAX_SDP` octets, `MAX_LINES` lines, `MAX_MEDIA` m-lines. Every failure is an
`SdpError` carrying the SIP status to answer (400: the body is not a session description;
RFC 3261 §21.4.1) and a Warning code (RFC 3261 §20.43).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final

__all__ = [
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_SDP",
    "Media",
    "SdpError",
    "SessionDescription",
    "parse_sdp",
]

MAX_SDP: Final = 16384
MAX_LINES: Final = 256
MAX_MEDIA: Final = 16

_line_re = re.compile(r"([a-z])=([^\r\n\x00]*)")
_token_re = re.compile(r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+")
_port_re = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")


class SdpError(Exception):
    """An unusable session description; `status` and `warning` (code, text) say what the
    SIP side answers (400 with no warning for a body that is not SDP; 488 with 3xx)."""

    def __init__(self, message: str, status: int = 400, warning: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.warning = warning


@dataclass(frozen=True)
class Media:
    """One media description: `m=<media> <port>[/<n>] <proto> <fmt> ...` and its lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None  # c= value, if any
    attributes: tuple[tuple[str, str | None], ...] = ()  # a=name[:value], in order
    other: tuple[tuple[str, str], ...] = ()  # i=, b=, k= as written

    def attribute(self, name: str) -> str | None:
        """The first value of a=`name` (names are case-sensitive, RFC 4566 §5.13);
        "" for a property attribute, None when absent."""
        for n, v in self.attributes:
            if n == name:
                return "" if v is None else v
        return None

    def attribute_values(self, name: str) -> tuple[str, ...]:
        return tuple("" if v is None else v for n, v in self.attributes if n == name)

    def rejected(self) -> Media:
        """The answer's copy of a refused stream (RFC 3264 §6: port 0, same formats)."""
        return Media(self.media, 0, self.proto, self.formats)


@dataclass(frozen=True)
class SessionDescription:
    origin: str  # o= value: username sess-id sess-version nettype addrtype address
    name: str = "-"
    connection: str | None = None
    times: tuple[str, ...] = ("0 0",)
    attributes: tuple[tuple[str, str | None], ...] = ()
    media: tuple[Media, ...] = ()
    other: tuple[tuple[str, str], ...] = field(default=())  # i= u= e= p= b= r= z= k=

    def attribute_values(self, name: str) -> tuple[str, ...]:
        return tuple("" if v is None else v for n, v in self.attributes if n == name)

    def with_media(self, media: tuple[Media, ...]) -> SessionDescription:
        return replace(self, media=media)

    def serialize(self) -> bytes:
        """RFC 4566 order, CRLF line ends."""
        lines = ["v=0", f"o={self.origin}", f"s={self.name}"]
        lines += [f"{t}={v}" for t, v in self.other if t in "iuep"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"{t}={v}" for t, v in self.other if t == "b"]
        for t in self.times:
            lines.append(f"t={t}")
        lines += [f"{t}={v}" for t, v in self.other if t in "rzk"]
        lines += [_attr(n, v) for n, v in self.attributes]
        for m in self.media:
            port = str(m.port)
            lines.append(f"m={m.media} {port} {m.proto} {' '.join(m.formats)}")
            lines += [f"{t}={v}" for t, v in m.other if t == "i"]
            if m.connection is not None:
                lines.append(f"c={m.connection}")
            lines += [f"{t}={v}" for t, v in m.other if t in "bk"]
            lines += [_attr(n, v) for n, v in m.attributes]
        text = "\r\n".join(lines) + "\r\n"
        for line in lines:
            if "\r" in line or "\n" in line or "\x00" in line:
                raise ValueError(f"SDP line with a line break: {line[:60]!r}")
        return text.encode("utf-8")


def _attr(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _split_attr(value: str) -> tuple[str, str | None]:
    name, sep, rest = value.partition(":")
    if _token_re.fullmatch(name) is None:
        raise SdpError(f"malformed attribute a={value[:60]!r}")
    return name, (rest if sep else None)


def _parse_m(value: str) -> tuple[str, int, str, tuple[str, ...]]:
    parts = value.split(" ")
    if len(parts) < 4 or "" in parts:
        raise SdpError(f"malformed media line m={value[:60]!r}")
    media, port, proto, *formats = parts
    pm = _port_re.fullmatch(port)
    if _token_re.fullmatch(media) is None or pm is None or int(pm[1]) > 65535:
        raise SdpError(f"malformed media line m={value[:60]!r}")
    if any(_token_re.fullmatch(p) is None for p in proto.split("/")):
        raise SdpError(f"malformed proto in m={value[:60]!r}")
    return media, int(pm[1]), proto, tuple(formats)


class _MediaBuilder:
    def __init__(self, media: str, port: int, proto: str, formats: tuple[str, ...]) -> None:
        self.head = (media, port, proto, formats)
        self.connection: str | None = None
        self.attributes: list[tuple[str, str | None]] = []
        self.other: list[tuple[str, str]] = []

    def add(self, kind: str, value: str) -> None:
        if kind == "a":
            self.attributes.append(_split_attr(value))
        elif kind == "c":
            self.connection = value
        elif kind in "ibk":
            self.other.append((kind, value))
        else:
            raise SdpError(f"{kind}= line inside a media description (RFC 4566 §5)")

    def build(self) -> Media:
        return Media(*self.head, self.connection, tuple(self.attributes), tuple(self.other))


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse a session description; `SdpError` (400) when it is not one (module docs)."""
    if len(data) > MAX_SDP:
        raise SdpError(f"session description over {MAX_SDP} octets", 400)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("session description is not UTF-8") from None
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    if len(raw) > MAX_LINES:
        raise SdpError(f"more than {MAX_LINES} lines")
    lines: list[tuple[str, str]] = []
    for raw_line in raw:
        line = raw_line.removesuffix("\r")
        m = _line_re.fullmatch(line)
        if m is None:
            raise SdpError(f"malformed line {line[:60]!r} (RFC 4566 §5)")
        lines.append((m[1], m[2]))
    if not lines or lines[0] != ("v", "0"):
        raise SdpError("the first line is not v=0 (RFC 4566 §5.1)")
    origin: str | None = None
    name: str | None = None
    conn: str | None = None
    times: list[str] = []
    attrs: list[tuple[str, str | None]] = []
    other: list[tuple[str, str]] = []
    media: list[Media] = []
    cur: _MediaBuilder | None = None
    for kind, value in lines[1:]:
        if kind == "m":
            if cur is not None:
                media.append(cur.build())
            if len(media) >= MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} media descriptions")
            cur = _MediaBuilder(*_parse_m(value))
        elif cur is not None:
            cur.add(kind, value)
        elif kind == "o":
            if origin is not None or len(value.split(" ")) != 6:
                raise SdpError(f"malformed or repeated o= line {value[:60]!r} (RFC 4566 §5.2)")
            origin = value
        elif kind == "s":
            if name is not None:
                raise SdpError("repeated s= line")
            name = value
        elif kind == "c":
            conn = value
        elif kind == "t":
            times.append(value)
        elif kind == "a":
            attrs.append(_split_attr(value))
        elif kind in "iuepbrzk":
            other.append((kind, value))
        elif kind == "v":
            raise SdpError("repeated v= line")
        else:
            raise SdpError(f"unknown line type {kind}= (RFC 4566 §5)")
    if cur is not None:
        media.append(cur.build())
    if origin is None or name is None:
        raise SdpError("missing o= or s= line (RFC 4566 §5)")
    return SessionDescription(
        origin, name, conn, tuple(times) or ("0 0",), tuple(attrs), tuple(media), tuple(other)
    )
