"""Header-field tables and typed views (RFC 3261 §7.3, §20, §25; RFC 6665 §8.4; RFC 3581).

Headers are stored raw (see `message.Headers`); the frozen views here are parsed on demand
by `parse_*` functions, which raise `RemoteProtocolError` (400) on malformed values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from gateway.sip import abnf
from gateway.sip.abnf import (
    LWS,
    PORT,
    POSSESSIVE_GEN_VALUE,
    POSSESSIVE_HOST,
    POSSESSIVE_QUOTED_STRING,
    POSSESSIVE_TOKEN,
    QUOTED_STRING,
    SWS,
    TOKEN,
)
from gateway.sip.compiling import mypyc_attr
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.uri import SipUri, Uri, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "SINGLETON_HEADERS",
    "AuthHeader",
    "CSeq",
    "ContentType",
    "Event",
    "NameAddr",
    "Params",
    "SubscriptionState",
    "Via",
    "canonical_name",
    "parse_accept",
    "parse_auth",
    "parse_content_type",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_event",
    "parse_max_forwards",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_subscription_state",
    "parse_token_list",
    "parse_via",
    "split_comma",
]

MAX_UINT32 = 2**32 - 1
DEFAULT_EXPIRES = 3600  # RFC 3261 §20.19, RFC 4475 §3.1.2.4
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

# Compact forms: RFC 3261 §7.3.3 and §20 (i f t v m l c s k e), RFC 6665 (o u),
# RFC 3515 (r), RFC 3892 (b), RFC 4028 (x), RFC 4474 (y n), RFC 3841 (a j d).
COMPACT_FORMS: Mapping[str, str] = MappingProxyType(
    {
        "a": "Accept-Contact",
        "b": "Referred-By",
        "c": "Content-Type",
        "d": "Request-Disposition",
        "e": "Content-Encoding",
        "f": "From",
        "i": "Call-ID",
        "j": "Reject-Contact",
        "k": "Supported",
        "l": "Content-Length",
        "m": "Contact",
        "n": "Identity-Info",
        "o": "Event",
        "r": "Refer-To",
        "s": "Subject",
        "t": "To",
        "u": "Allow-Events",
        "v": "Via",
        "x": "Session-Expires",
        "y": "Identity",
    }
)

_LONG_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "Flow-Timer",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Target-Dialog",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]

_CANONICAL: dict[str, str] = {n.lower(): n for n in _LONG_NAMES}
_CANONICAL.update(COMPACT_FORMS)


def canonical_name(name: str) -> str:
    """Long canonical spelling of a known header (compact forms expanded), else `name`."""
    return _CANONICAL.get(name.lower(), name)


# Header fields that may appear at most once (RFC 3261 §7.3.1, §20; RFC 6665 §8.2);
# a duplicate is a 400 (RFC 4475 §3.3.8) or, for Content-Length, a framing error (§3.3.9).
SINGLETON_HEADERS = frozenset(
    {
        "Call-ID",
        "From",
        "To",
        "CSeq",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Expires",
        "Min-Expires",
        "Event",
        "Subscription-State",
    }
)

# Header fields defined as comma-separated lists (RFC 3261 §7.3.1: may be split or combined).
# The auth headers are NOT lists: their values contain commas.
LIST_HEADERS = frozenset(
    {
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "Path",
        "Proxy-Require",
        "Record-Route",
        "Reject-Contact",
        "Require",
        "Route",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)

# A comma-list element: quoted-strings and <...> are opaque (a comma inside them does not split).
_comma_chunk_re = re.compile(r'"(?:[^"\\]|\\.)*"|<[^<>]*>|[^,"<]+|[",<]', re.DOTALL)


def split_comma(value: str) -> list[str]:
    """Split a list header value at top-level commas; elements are stripped."""
    if "," not in value:
        return [value.strip(" \t")]
    out: list[str] = []
    cur: list[str] = []
    for m in _comma_chunk_re.finditer(value):
        chunk = m.group(0)
        if chunk == ",":
            out.append("".join(cur).strip(" \t"))
            cur = []
        else:
            cur.append(chunk)
    out.append("".join(cur).strip(" \t"))
    return out


# ---------------------------------------------------------------- generic params

# *( SEMI generic-param ) ; SEMI = SWS ";" SWS ; generic-param = token [ EQUAL gen-value ]
# (possessive: a param name ends before SWS "=" or ";", a value before SWS ";" or the end)
_PARAMS = rf"(?:{SWS};{SWS}{POSSESSIVE_TOKEN}(?:{SWS}={SWS}{POSSESSIVE_GEN_VALUE})?)*{SWS}"
_param_iter_re = re.compile(rf";{SWS}({POSSESSIVE_TOKEN})(?:{SWS}={SWS}({POSSESSIVE_GEN_VALUE}))?")
_params_re = re.compile(_PARAMS)
# via-received = "received" EQUAL (IPv4address / IPv6address): a bare IPv6 address, no
# brackets (RFC 3261 §25.1, RFC 5118 §4.5), which is not a token; Via params allow it.
_BARE_IPV6 = r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*+"
_VIA_VALUE = rf"(?:{_BARE_IPV6}|{POSSESSIVE_GEN_VALUE})"
_VIA_PARAMS = rf"(?:{SWS};{SWS}{POSSESSIVE_TOKEN}(?:{SWS}={SWS}{_VIA_VALUE})?)*{SWS}"
_via_param_iter_re = re.compile(rf";{SWS}({POSSESSIVE_TOKEN})(?:{SWS}={SWS}({_VIA_VALUE}))?")


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class Params:
    """Ordered header parameters. Names compare case-insensitively; values are raw
    (quoted-strings keep their quotes); `get` unquotes."""

    items: tuple[tuple[str, str | None], ...] = ()

    def _find(self, name: str) -> tuple[bool, str | None]:
        key = name.lower()
        for n, v in self.items:
            if n.lower() == key:
                return True, v
        return False, None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name)[0]

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, name: str) -> str | None:
        return self._find(name)[1]

    def get(self, name: str) -> str | None:
        """Unquoted value; None if absent or a flag (use `in` to test flags)."""
        v = self._find(name)[1]
        if v is not None and v.startswith('"'):
            return abnf.unquote(v)
        return v

    def with_param(self, name: str, value: str | None) -> Params:
        """Replace (in place) or append `name`; `value` is raw (quote it yourself if needed)."""
        key = name.lower()
        items = list(self.items)
        for i, (n, _) in enumerate(items):
            if n.lower() == key:
                items[i] = (n, value)
                return Params(tuple(items))
        return Params((*self.items, (name, value)))

    def without(self, name: str) -> Params:
        key = name.lower()
        return Params(tuple(p for p in self.items if p[0].lower() != key))

    def __str__(self) -> str:
        return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self.items)


def _parse_params(text: str, what: str) -> Params:
    if not text or text.isspace():
        return Params()
    if _params_re.fullmatch(text) is None:
        raise RemoteProtocolError(f"malformed {what} parameters {text!r}")
    return _matched_params(text)


_NO_PARAMS = Params()


def _matched_params(text: str, iter_re: re.Pattern[str] = _param_iter_re) -> Params:
    """Params of `text` already matched by `_PARAMS` (as a group of a larger fullmatch).
    A matched gen-value is never empty, so findall's "" means "no value" (None)."""
    if not text or text.isspace():
        return _NO_PARAMS  # immutable: one shared empty instance
    params = object.__new__(Params)
    params.__dict__["items"] = tuple([(n, v or None) for n, v in iter_re.findall(text)])
    return params


def _delta(text: str) -> int | None:
    """delta-seconds = 1*DIGIT, None if not digits or beyond 2**32-1 (no huge int())."""
    digits = text.lstrip("0") or "0"
    if not text.isascii() or not text.isdigit() or len(digits) > 10:
        return None
    value = int(digits)
    return value if value <= MAX_UINT32 else None


def parse_delta_seconds(text: str, default: int = DEFAULT_EXPIRES) -> int:
    """Expires/Min-Expires/expires param: malformed or overlarge -> `default`
    (RFC 3261 §20.19 "treated as equivalent to 3600"; RFC 4475 §3.1.2.4)."""
    value = _delta(text.strip(" \t"))
    return default if value is None else value


# ---------------------------------------------------------------- Via

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport ; SLASH = SWS "/" SWS
# sent-by = host [ COLON port ]
# (possessive: the tokens end before SWS "/" or LWS, the host before SWS ":" / ";" or the end)
_T = POSSESSIVE_TOKEN
_via_re = re.compile(
    rf"({_T}){SWS}/{SWS}({_T}){SWS}/{SWS}({_T}){LWS}({POSSESSIVE_HOST})"
    rf"(?:{SWS}:{SWS}({PORT}))?({_VIA_PARAMS})"
)


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class Via:
    """One via-parm. `transport` is upper-cased; `params` keeps branch, received, rport..."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        """True for a branch with the magic cookie *and* an id (RFC 4475 §3.2.1)."""
        b = self.branch
        return b is not None and b.startswith(MAGIC_COOKIE) and len(b) > len(MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport_requested(self) -> bool:
        """`rport` present, with or without a value (RFC 3581 §3)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        v = self.params.get("rport")
        return int(v) if v is not None and v.isdigit() and len(v) <= 5 else None

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        v = self.params.get("ttl")
        return int(v) if v is not None and v.isdigit() and len(v) <= 3 else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def with_received(self, host: str, port: int | None = None) -> Via:
        """Add `received` (RFC 3261 §18.2.1) and fill `rport` if requested (RFC 3581 §4)."""
        params = self.params.with_param("received", host)
        if port is not None and self.rport_requested:
            params = params.with_param("rport", str(port))
        return replace(self, params=params)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{self.params}"


def _parse_one_via(text: str) -> Via:
    m = _via_re.fullmatch(text)
    if m is None:
        raise RemoteProtocolError(f"malformed Via {text!r}")
    name, version, transport, host, port, params = m.groups()
    if port is not None and (len(port) > 5 or int(port) > 65535):
        raise RemoteProtocolError(f"bad Via port {port!r}")
    via = object.__new__(Via)  # Via(...) without the frozen __init__'s per-field cost
    via.__dict__.update(
        transport=transport.upper(),
        host=host,
        port=None if port is None else int(port),
        params=_matched_params(params, _via_param_iter_re),
        protocol=f"{name.upper()}/{version}",
    )
    return via


def parse_via(value: str) -> list[Via]:
    """All via-parms of one Via header value (comma-separated)."""
    return [_parse_one_via(v) for v in split_comma(value)]


# ---------------------------------------------------------------- name-addr

# name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
# display-name = *(token LWS) / quoted-string   (RFC 4475 §3.1.1.6: LWS before "<" optional)
# LAQUOT = SWS "<" ; RAQUOT = ">" SWS
_name_addr_re = re.compile(
    rf"{SWS}(?:({POSSESSIVE_QUOTED_STRING})|({_T}(?:{LWS}{_T})*))?{SWS}<([^<>\s]+)>({_PARAMS})"
)
# addr-spec without <>: stops at ";" (RFC 3261 §20.10: a URI with , ? or ; needs <>)
_addr_spec_re = re.compile(rf"{SWS}([^\s;,<>\"?]+)({_PARAMS})")


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class NameAddr:
    """From/To/Contact/Route/Record-Route/Reply-To value: display name, URI, header params."""

    uri: Uri
    display_name: str | None = None
    params: Params = field(default_factory=Params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def q(self) -> float | None:
        v = self.params.get("q")
        try:
            return None if v is None else float(v)
        except ValueError:
            return None

    @property
    def expires(self) -> int | None:
        v = self.params.get("expires")
        return None if v is None else parse_delta_seconds(v)

    @property
    def instance(self) -> str | None:
        """`+sip.instance` (RFC 5626 §4.1), unquoted."""
        return self.params.get("+sip.instance")

    @property
    def gr(self) -> str | None:
        """GRUU `gr`: a URI param (RFC 5627) or, leniently, a header param (DIGEST §0)."""
        if isinstance(self.uri, SipUri) and self.uri.gr is not None:
            return self.uri.gr
        if "gr" in self.params:
            return self.params.get("gr") or ""
        return None

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params=self.params.with_param("tag", tag))

    def __str__(self) -> str:
        name = "" if self.display_name is None else abnf.quote(self.display_name) + " "
        return f"{name}<{self.uri}>{self.params}"


def parse_name_addr(value: str) -> NameAddr:
    """( name-addr / addr-spec ) *( SEMI param ), e.g. a From or To value."""
    m = _name_addr_re.fullmatch(value)
    if m is not None:
        quoted, tokens, uri, params = m.groups()
        display = abnf.unquote(quoted) if quoted is not None else tokens
    else:
        m = _addr_spec_re.fullmatch(value)
        if m is None:
            raise RemoteProtocolError(f"malformed name-addr {value!r}")
        uri, params = m.groups()
        display = None
    addr = object.__new__(NameAddr)  # NameAddr(...) without the frozen __init__'s cost
    addr.__dict__.update(uri=parse_uri(uri), display_name=display, params=_matched_params(params))
    return addr


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Contact/Route/Record-Route values (comma list); `*` is not accepted here."""
    return [parse_name_addr(v) for v in split_comma(value)]


# ---------------------------------------------------------------- CSeq, Max-Forwards

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
_cseq_re = re.compile(rf"{SWS}([0-9]+){LWS}({TOKEN}){SWS}")


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """CSeq with a 32-bit sequence number (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.4)."""
    m = _cseq_re.fullmatch(value)
    seq = None if m is None else _delta(m.group(1))
    if m is None or seq is None:
        raise RemoteProtocolError(f"malformed CSeq {value!r}")
    cseq = object.__new__(CSeq)  # CSeq(...) without the frozen __init__'s per-field cost
    cseq.__dict__.update(seq=seq, method=m.group(2))
    return cseq


def parse_max_forwards(value: str) -> int | None:
    """Max-Forwards = 1*DIGIT; > 255 is treated as absent (RFC 4475 §3.1.2.4) -> None."""
    v = value.strip(" \t")
    if not v.isascii() or not v.isdigit():
        raise RemoteProtocolError(f"malformed Max-Forwards {value!r}")
    n = _delta(v)
    return n if n is not None and n <= 255 else None


# ---------------------------------------------------------------- Content-Type, Accept

# media-type = m-type SLASH m-subtype *(SEMI m-parameter) ; m-parameter = token EQUAL
#              (token / quoted-string)
# media-range = ( "*/*" / ( m-type SLASH "*" ) / ( m-type SLASH m-subtype ) ) *( SEMI
#               accept-param )
_media_re = re.compile(rf"{SWS}({TOKEN}){SWS}/{SWS}({TOKEN})({_PARAMS})")


@dataclass(frozen=True)
class ContentType:
    """A media type or Accept media-range; type and subtype lower-cased."""

    type: str
    subtype: str
    params: Params = field(default_factory=Params)

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def charset(self) -> str | None:
        v = self.params.get("charset")
        return None if v is None else v.lower()

    @property
    def boundary(self) -> str | None:
        return self.params.get("boundary")

    def matches(self, mime: str) -> bool:
        """Does this media-range accept `mime` ("type/subtype")?"""
        t, _, s = mime.lower().partition("/")
        return self.type in ("*", t) and self.subtype in ("*", s)

    def __str__(self) -> str:
        return f"{self.mime}{self.params}"


def parse_content_type(value: str) -> ContentType:
    m = _media_re.fullmatch(value)
    if m is None:
        raise RemoteProtocolError(f"malformed media type {value!r}")
    return ContentType(m.group(1).lower(), m.group(2).lower(), _matched_params(m.group(3)))


def parse_accept(values: Iterable[str]) -> list[ContentType]:
    """Accept values; an empty header contributes nothing (RFC 3261 §20.1)."""
    out: list[ContentType] = []
    for value in values:
        if value.strip(" \t"):
            out.extend(parse_content_type(v) for v in split_comma(value))
    return out


def parse_token_list(values: Iterable[str]) -> list[str]:
    """Allow, Supported, Require, Proxy-Require, Unsupported, Allow-Events: 1#token.
    An empty header (e.g. `Supported:`) contributes nothing."""
    out: list[str] = []
    for value in values:
        if not value.strip(" \t"):
            continue
        for item in split_comma(value):
            if not abnf.is_token(item):
                raise RemoteProtocolError(f"malformed token list {value!r}")
            out.append(item)
    return out


# ---------------------------------------------------------------- RFC 6665 §8.4

# Event = ( "Event" / "o" ) HCOLON event-type *( SEMI event-param )
# event-type = event-package *( "." event-template ) ; both token-nodot
_event_re = re.compile(rf"{SWS}({TOKEN})({_PARAMS})")


@dataclass(frozen=True)
class Event:
    package: str
    params: Params = field(default_factory=Params)

    @property
    def id(self) -> str | None:
        return self.params.get("id")

    def matches(self, other: Event) -> bool:
        """Same event-type and same `id` (absent only matches absent) (RFC 6665 §8.2.1)."""
        return self.package == other.package and self.id == other.id

    def __str__(self) -> str:
        return f"{self.package}{self.params}"


def parse_event(value: str) -> Event:
    m = _event_re.fullmatch(value)
    if m is None or m.group(1).startswith(".") or ".." in m.group(1):
        raise RemoteProtocolError(f"malformed Event {value!r}")
    return Event(m.group(1), _matched_params(m.group(2)))


# Subscription-State = "Subscription-State" HCOLON substate-value *( SEMI subexp-params )
@dataclass(frozen=True)
class SubscriptionState:
    state: str  # lower-cased: active / pending / terminated / extension
    params: Params = field(default_factory=Params)

    @property
    def reason(self) -> str | None:
        v = self.params.get("reason")
        return None if v is None else v.lower()

    @property
    def expires(self) -> int | None:
        v = self.params.get("expires")
        return None if v is None else _delta(v)

    @property
    def retry_after(self) -> int | None:
        v = self.params.get("retry-after")
        return None if v is None else _delta(v)

    def __str__(self) -> str:
        return f"{self.state}{self.params}"


def parse_subscription_state(value: str) -> SubscriptionState:
    m = _event_re.fullmatch(value)
    if m is None:
        raise RemoteProtocolError(f"malformed Subscription-State {value!r}")
    return SubscriptionState(m.group(1).lower(), _matched_params(m.group(2)))


# ---------------------------------------------------------------- authentication

# challenge / credentials = auth-scheme LWS auth-param *(COMMA auth-param)   (RFC 3261 §25)
# auth-param = auth-param-name EQUAL ( token / quoted-string )
_auth_head_re = re.compile(rf"{SWS}({TOKEN})(?:{LWS}(.*))?", re.DOTALL)
_auth_param_re = re.compile(rf"({TOKEN}){SWS}={SWS}({TOKEN}|{QUOTED_STRING})")


@dataclass(frozen=True)
class AuthHeader:
    """WWW-/Proxy-Authenticate, Authorization, Proxy-Authorization: scheme and auth-params.

    `params` has lower-cased names and unquoted values; `quoted` names those that were
    quoted-strings. `raw` is the text after the scheme when it is not an auth-param list
    (e.g. token68 of non-digest schemes); then `params` is empty.
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)
    quoted: frozenset[str] = frozenset()
    raw: str = ""

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    def __str__(self) -> str:
        if not self.params:
            return f"{self.scheme} {self.raw}".rstrip()
        parts = []
        for name, value in self.params.items():
            quote = name in self.quoted or not abnf.is_token(value)
            parts.append(f"{name}={abnf.quote(value) if quote else value}")
        return f"{self.scheme} " + ", ".join(parts)


def parse_auth(value: str) -> AuthHeader:
    m = _auth_head_re.fullmatch(value.strip(" \t"))
    if m is None:
        raise RemoteProtocolError(f"malformed auth header {value!r}")
    scheme, rest = m.group(1), (m.group(2) or "").strip(" \t")
    params: dict[str, str] = {}
    quoted: set[str] = set()
    for item in split_comma(rest) if rest else []:
        p = _auth_param_re.fullmatch(item)
        if p is None:  # not an auth-param list: keep it opaque (RFC 4475 §3.3.7)
            return AuthHeader(scheme, {}, frozenset(), rest)
        name, val = p.group(1).lower(), p.group(2)
        if val.startswith('"'):
            quoted.add(name)
            val = abnf.unquote(val)
        params[name] = val
    return AuthHeader(scheme, params, frozenset(quoted), "")
