"""SIP/SIPS URIs (RFC 3261 §19.1), tel URIs (RFC 3966, minimal) and other absolute URIs.

Components are kept raw (escapes intact) so `str()` re-emits what was parsed; decoded
helpers and RFC 3261 §19.1.4 comparison (`uri_equal`) work on normalised forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TypeAlias
from urllib.parse import unquote_to_bytes

from gateway.sip import abnf
from gateway.sip.compiling import mypyc_attr
from gateway.sip.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "AbsoluteUri",
    "SipUri",
    "TelUri",
    "Uri",
    "decode_escapes",
    "parse_uri",
    "uri_equal",
]

Param: TypeAlias = tuple[str, str | None]

# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]   (SIPS-URI alike)
# userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
# hostport = host [ ":" port ]
# (possessive forms: user/password end before ":" or "@", host before ":" ";" "?" or the end)
_sip_re = re.compile(
    rf"(?P<scheme>[Ss][Ii][Pp][Ss]?):"
    rf"(?:(?P<user>{abnf.POSSESSIVE_USER})(?::(?P<password>{abnf.POSSESSIVE_PASSWORD}))?@)?"
    rf"(?P<host>{abnf.POSSESSIVE_HOST})(?::(?P<port>{abnf.PORT}))?"
    rf"(?P<params>(?:;[^;?]*)*)"
    rf"(?:\?(?P<headers>.*))?",
    re.DOTALL,
)
# uri-parameter = pname [ "=" pvalue ] ; pname = 1*paramchar ; pvalue = 1*paramchar
_uri_param_re = re.compile(rf"({abnf.PARAMCHAR}+)(?:=({abnf.PARAMCHAR}+))?")
# uri-parameters = *( ";" uri-parameter ), checked whole, then read with findall
_uri_params_re = re.compile(rf"(?:;{abnf.PARAMCHAR}+(?:={abnf.PARAMCHAR}+)?)*")
_uri_param_iter_re = re.compile(rf";({abnf.PARAMCHAR}+)(?:=({abnf.PARAMCHAR}+))?")
# header = hname "=" hvalue ; hname = 1*( hnv-unreserved / unreserved / escaped )
_uri_header_re = re.compile(rf"({abnf.HNVCHAR}+)=({abnf.HNVCHAR}*)")
# absoluteURI = scheme ":" ( hier-part / opaque-part ) ; scheme = ALPHA *( ALPHA / DIGIT / "+" /
# "-" / "." ) ; uric = reserved / unreserved / escaped (plus "[" "]" of RFC 3986)
_abs_re = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):([A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]#]+)")
# telephone-subscriber (RFC 3966 §3), minimally: number then ;params
_tel_re = re.compile(r"[Tt][Ee][Ll]:([0-9A-Fa-f*#+\-.()pPwW]+)((?:;[^;]*)*)")

# reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","  (RFC 2396)
_RESERVED = frozenset(";/?:@&=+$,")
_escape_re = re.compile(r"%([0-9A-Fa-f]{2})")
# Parameters that never match when present in only one URI (RFC 3261 §19.1.4).
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")

_MAX_PORT = 65535


def decode_escapes(text: str) -> str:
    """Decode %HH escapes (UTF-8, invalid sequences kept as surrogate escapes)."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _normalise_escapes(text: str) -> str:
    """Decode %HH except for reserved characters, which stay escaped (RFC 3261 §19.1.4)."""
    if "%" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return "%" + m.group(1).upper() if ch in _RESERVED or ch == "%" else ch

    return _escape_re.sub(repl, text)


def _param_lookup(params: tuple[Param, ...], name: str) -> tuple[bool, str | None]:
    key = name.lower()
    for pname, pvalue in params:
        if pname.lower() == key or ("%" in pname and _normalise_escapes(pname).lower() == key):
            return True, pvalue
    return False, None


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class SipUri:
    """A sip: or sips: URI. `user`, `password`, params and headers keep their escapes."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: tuple[Param, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in ("sip", "sips"):
            raise LocalProtocolError(f"SipUri scheme must be sip or sips, not {self.scheme!r}")
        if not self.host:
            raise LocalProtocolError("SipUri needs a host")
        if self.port is not None and not 0 <= self.port <= _MAX_PORT:
            raise LocalProtocolError(f"port out of range: {self.port}")

    def __str__(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += (":", self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += (":", str(self.port))
        for name, value in self.params:
            out += (";", name) if value is None else (";", name, "=", value)
        if self.headers:
            out.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
        return "".join(out)

    @property
    def user_decoded(self) -> str | None:
        """The user part with %HH escapes decoded (RFC 3261 §19.1.2)."""
        return None if self.user is None else decode_escapes(self.user)

    @property
    def host_bare(self) -> str:
        """The host without IPv6 reference brackets, lower-cased."""
        h = self.host.lower()
        return h[1:-1] if h.startswith("[") else h

    def param(self, name: str) -> str | None:
        """The value of uri-parameter `name` (case-insensitive), None if absent or a flag."""
        return _param_lookup(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _param_lookup(self.params, name)[0]

    @property
    def transport(self) -> str | None:
        t = self.param("transport")
        return None if t is None else t.lower()

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    @property
    def lr(self) -> bool:
        """Loose routing flag (RFC 3261 §19.1.1)."""
        return self.has_param("lr")

    @property
    def gr(self) -> str | None:
        """GRUU parameter (RFC 5627 §3.1); '' when present without a value."""
        present, value = _param_lookup(self.params, "gr")
        return (value or "") if present else None

    @property
    def is_phone(self) -> bool:
        return (self.param("user") or "").lower() == "phone"

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    def with_params(self, *params: Param) -> SipUri:
        """A copy with `params` replacing existing ones of the same name, others appended."""
        names = {n.lower() for n, _ in params}
        kept = tuple(p for p in self.params if p[0].lower() not in names)
        return _replace(self, params=kept + tuple(params))

    def without_params(self, *names: str) -> SipUri:
        drop = {n.lower() for n in names}
        return _replace(self, params=tuple(p for p in self.params if p[0].lower() not in drop))

    def without_headers(self) -> SipUri:
        return _replace(self, headers=())

    @property
    def aor(self) -> str:
        """scheme:user@host, the address-of-record key (no port, params or headers)."""
        user = "" if self.user is None else self.user + "@"
        return f"{self.scheme}:{user}{self.host.lower()}"


def _replace(uri: SipUri, **changes: object) -> SipUri:
    from dataclasses import replace

    return replace(uri, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TelUri:
    """tel: URI (RFC 3966), minimal: the subscriber number and its parameters."""

    number: str
    params: tuple[Param, ...] = ()
    scheme: str = "tel"

    def __str__(self) -> str:
        tail = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self.params)
        return f"tel:{self.number}{tail}"

    def param(self, name: str) -> str | None:
        return _param_lookup(self.params, name)[1]

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")


@dataclass(frozen=True)
class AbsoluteUri:
    """Any other absoluteURI (RFC 3261 §25: scheme ":" opaque), kept verbatim (the scheme
    keeps its case; compare it case-insensitively)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri: TypeAlias = SipUri | TelUri | AbsoluteUri


def _split_params(text: str) -> tuple[Param, ...]:
    if not text:
        return ()
    if _uri_params_re.fullmatch(text) is not None:  # the usual case, one regex pass
        # a matched pvalue is never empty: findall's "" means "no value" (None)
        return tuple([(n, v or None) for n, v in _uri_param_iter_re.findall(text)])
    out: list[Param] = []  # find the first bad parameter for the error message
    for part in text[1:].split(";"):
        m = _uri_param_re.fullmatch(part)
        if m is None:
            raise RemoteProtocolError(f"bad URI parameter {part!r}")
        out.append((m.group(1), m.group(2)))
    return tuple(out)


def _split_headers(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for part in text.split("&"):
        m = _uri_header_re.fullmatch(part)
        if m is None:
            raise RemoteProtocolError(f"bad URI header {part!r}")
        out.append((m.group(1), m.group(2)))
    return tuple(out)


def parse_uri(text: str) -> Uri:
    """Parse a URI; raises RemoteProtocolError (400) on malformed input."""
    m = _sip_re.fullmatch(text)
    if m is not None:
        scheme, user, password, host, port, params, hdrs = m.groups()
        if port is not None and (len(port) > 5 or int(port) > _MAX_PORT):
            raise RemoteProtocolError(f"bad port in URI {text!r}")
        # SipUri(...) without the frozen __init__: the regex guarantees a sip/sips scheme
        # and a non-empty host, and the port was range-checked above
        uri = object.__new__(SipUri)
        uri.__dict__.update(
            scheme=scheme.lower(),
            user=user,
            password=password,
            host=host,
            port=None if port is None else int(port),
            params=_split_params(params) if params else (),
            headers=() if hdrs is None else _split_headers(hdrs),
        )
        return uri
    scheme = text.partition(":")[0].lower()
    if scheme in ("sip", "sips"):
        raise RemoteProtocolError(f"malformed SIP URI {text!r}")
    if scheme == "tel":
        t = _tel_re.fullmatch(text)
        if t is None:
            raise RemoteProtocolError(f"malformed tel URI {text!r}")
        return TelUri(number=t.group(1), params=_split_params(t.group(2)))
    a = _abs_re.fullmatch(text)
    if a is None:
        raise RemoteProtocolError(f"malformed URI {text!r}")
    return AbsoluteUri(scheme=a.group(1), rest=a.group(2))


def _norm_params(params: tuple[Param, ...]) -> dict[str, str | None]:
    return {
        _normalise_escapes(n).lower(): None if v is None else _normalise_escapes(v).lower()
        for n, v in params
    }


def uri_equal(a: Uri, b: Uri) -> bool:
    """URI equivalence per RFC 3261 §19.1.4 (SIP/SIPS); other schemes compare textually,
    case-insensitive in the scheme only (tel numbers ignore visual separators, RFC 3966 §4)."""
    if isinstance(a, SipUri) and isinstance(b, SipUri):
        return _sip_equal(a, b)
    if isinstance(a, TelUri) and isinstance(b, TelUri):
        strip = str.maketrans("", "", "-.()")
        return a.number.translate(strip).lower() == b.number.translate(
            strip
        ).lower() and _norm_params(a.params) == _norm_params(b.params)
    if isinstance(a, AbsoluteUri) and isinstance(b, AbsoluteUri):
        return a.scheme.lower() == b.scheme.lower() and a.rest == b.rest
    return False


def _opt_norm(text: str | None) -> str | None:
    return None if text is None else _normalise_escapes(text)


def _sip_equal(a: SipUri, b: SipUri) -> bool:
    if a.scheme != b.scheme or a.port != b.port:
        return False
    if _opt_norm(a.user) != _opt_norm(b.user) or _opt_norm(a.password) != _opt_norm(b.password):
        return False
    if a.host.lower() != b.host.lower():
        return False
    pa, pb = _norm_params(a.params), _norm_params(b.params)
    for name in pa.keys() & pb.keys():
        if pa[name] != pb[name]:
            return False
    for name in _MUST_MATCH_PARAMS:
        if (name in pa) != (name in pb):
            return False
    ha = {_normalise_escapes(n).lower(): _normalise_escapes(v) for n, v in a.headers}
    hb = {_normalise_escapes(n).lower(): _normalise_escapes(v) for n, v in b.headers}
    return ha == hb
