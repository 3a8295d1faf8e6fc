"""message/cpim (RFC 3862): parse and build, octet-preserving.

A message/cpim body (what follows the SIP ``Content-Type: message/cpim`` header) is::

    message headers CRLF          ; RFC 3862 §3, strict syntax, case-sensitive names
    CRLF
    encapsulated MIME headers     ; at least Content-Type (§2.4)
    CRLF
    encapsulated body             ; opaque bytes, never touched (§9, RFC 3923 signatures)

Decisions (see docs/formats.md):

* Lines end in CRLF (§2.2 MUST); a bare LF is tolerated on input, CRLF is always emitted.
* A message header must be ``Name:`` + params + exactly one SP + value; no leading
  whitespace (no folding) and no raw control characters -- violations raise CpimError
  (SIP 400 / bad-request).
* Header values are kept raw (still escaped) so that the octets survive unchanged;
  :meth:`CpimHeader.text` gives the unescaped text (§2.3).
* Names are resolved to (namespace URI, local name) with the ``NS`` headers in scope
  (§3.4): any prefix (or the default namespace) declaring the same URI is equivalent.
* ``Require`` (§3.5) naming a header or feature outside ``understood`` raises
  :class:`CpimUnsupported` (SIP 400 "Unsupported CPIM Require" / XMPP
  feature-not-implemented): RFC 3922 §4.2.7 asks the gateway to return an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from mappings.xmlsafe import FormatError

CPIM_NS: Final = "urn:ietf:params:cpim-headers:"
"""Default namespace of message headers (RFC 3862 §4, §7.2)."""

IMDN_NS: Final = "urn:ietf:params:imdn"
"""RFC 5438 §6.1 header namespace (here so the default ``understood`` set can name it)."""


class CpimError(FormatError):
    """A message/cpim body is malformed (RFC 3862): SIP 400 / XMPP bad-request."""


class CpimUnsupported(CpimError):
    """``Require`` names a header or feature this gateway does not understand (§3.5)."""

    default_xmpp_condition = "feature-not-implemented"


# --- RFC 3339 date-time (used by CPIM DateTime, PIDF timestamp, IMDN, isComposing) ---

# date-time = full-date "T" full-time; full-time = partial-time time-offset
# partial-time = time-hour ":" time-minute ":" time-second [time-secfrac]
# time-offset = "Z" / ("+" / "-") time-hour ":" time-minute   (RFC 3339 §5.6)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_datetime(text: str) -> datetime:
    """Parse an RFC 3339 ``date-time`` into an aware datetime; ValueError if malformed.

    A leap second (``:60``) is clamped to ``:59.999999``; fractions beyond
    microseconds are truncated. Lowercase ``t``/``z`` are accepted (RFC 3339 §5.6 NOTE).
    """
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micro = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
    if second == 60:
        second, micro = 59, 999999
    offset = m.group(8)
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad time-offset in {text!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def format_datetime(value: datetime) -> str:
    """RFC 3339 with uppercase ``T``/``Z`` (RFC 3863 §4.1.7); ``value`` must be aware."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("datetime must be timezone-aware")
    text = (  # not strftime: %Y does not zero-pad years before 1000 on glibc
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    if not offset:
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# --- Grammar (RFC 3862 §3.6) ---

# NAMECHAR = %x21 / %x23-27 / %x2a-2b / %x2d / %x5e-60 / %x7c / %x7e / ALPHA / DIGIT
_NAMECHAR = r"[!#-'*+\-^-`|~A-Za-z0-9]"
# Name = 1*NAMECHAR ; Header-name = [ Name-prefix "." ] Name
_NAME = rf"{_NAMECHAR}+"
_HEADER_NAME = re.compile(rf"(?:({_NAME})\.)?({_NAME})")
# TOKENCHAR = NAMECHAR / "." / UCS-high ; Token = 1*TOKENCHAR
_TOKEN = r"(?:[!#-'*+\-.^-`|~A-Za-z0-9]|[^\x00-\x7f])+"
# String = DQUOTE *( Str-char / Escape ) DQUOTE
_STRING = r'"(?:[^"\\]|\\.)*"'
# Parameter = Lang-param / Ext-param ; Ext-param = Param-name "=" Param-value
# Param-value = Token / Number / String  (Number is a Token)
_PARAM = re.compile(rf";({_NAME})=({_TOKEN}|{_STRING})")
# Header = Header-name ":" *( ";" Parameter ) SP Header-value CRLF
_HEADER = re.compile(rf"({_HEADER_NAME.pattern}):((?:;{_NAME}=(?:{_TOKEN}|{_STRING}))*) (.*)")
# CTL = %x0-%x1f / %x7f: never raw in a header (§2.2), only as escapes (§2.3)
_CTL = re.compile(r"[\x00-\x1f\x7f]")
# URI = absolute-URI (RFC 2396): scheme ":" then no space or angle bracket
_URI = r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>]+"
# From/To/cc-header = [ Formal-name ] "<" URI ">" ; Formal-name = 1*( Token SP ) / String
# (a SP after a quoted Formal-name is tolerated on input)
_ADDRESS = re.compile(rf"(?:((?:{_TOKEN} )+)|({_STRING}) ?)?<({_URI})>")
# NS-header = "NS" ": " [ Name-prefix ] "<" URI ">"  (a SP follows the prefix in §4.6)
_NS_VALUE = re.compile(rf"(?:({_NAME}) ?)?<({_URI})>")
# Require-header = "Require" ": " Header-name *( "," Header-name )
_REQUIRE_SPLIT = re.compile(r" *, *")

# Escape = "\" ( "u" 4HEXDIG / "b" / "t" / "n" / "r" / DQUOTE / "'" / "\" )  (§2.3)
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.?)", re.DOTALL)
_SIMPLE_UNESCAPES: Final = {"b": "\b", "t": "\t", "n": "\n", "r": "\r"}
_SIMPLE_ESCAPES: Final = {"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def unescape(raw: str) -> str:
    """Undo the §2.3 escapes.

    An unknown escape yields the next char; a trailing lone backslash is dropped.
    """

    def repl(m: re.Match[str]) -> str:
        seq = m.group(1)
        if len(seq) == 5:
            return chr(int(seq[1:], 16))
        return _SIMPLE_UNESCAPES.get(seq, seq)

    return _ESCAPE.sub(repl, raw)


def escape(text: str, quote: str | None = None) -> str:
    """Apply §2.3.1: ``\\ \\b \\t \\n \\r`` specials, ``\\uXXXX`` for other CTLs, and
    ``quote`` (``"`` or ``'``) escaped when the text goes inside such quotes."""
    out = []
    for ch in text:
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif ch == quote:
            out.append("\\" + ch)
        elif _CTL.match(ch):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


# --- Data model ---


@dataclass(frozen=True)
class Address:
    """``[ Formal-name ] "<" URI ">"`` (From, To, cc; RFC 5438 Original-To, IMDN-Route)."""

    uri: str
    display: str | None = None

    def render(self) -> str:
        if not self.display:
            return f"<{self.uri}>"
        if re.fullmatch(rf"{_TOKEN}(?: {_TOKEN})*", self.display):
            return f"{self.display} <{self.uri}>"
        return f'"{escape(self.display, quote=chr(34))}" <{self.uri}>'


@dataclass(frozen=True)
class CpimHeader:
    """One message header exactly as on the wire: ``name:params value``.

    ``value`` is the raw, still-escaped header value; ``params`` the raw
    ``(name, value)`` pairs (a quoted value keeps its quotes).
    """

    name: str
    value: str
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _HEADER_NAME.fullmatch(self.name):
            raise CpimError(f"bad CPIM header name {self.name!r}")
        if _CTL.search(self.value):
            raise CpimError(f"control character in CPIM header {self.name}")
        for pname, pvalue in self.params:
            if not _PARAM.fullmatch(f";{pname}={pvalue}"):
                raise CpimError(f"bad parameter {pname!r} in CPIM header {self.name}")

    @property
    def prefix(self) -> str | None:
        return self.name.partition(".")[0] if "." in self.name else None

    @property
    def local(self) -> str:
        return self.name.rpartition(".")[2]

    @property
    def text(self) -> str:
        """The value with §2.3 escapes undone."""
        return unescape(self.value)

    @property
    def lang(self) -> str | None:
        """The ``;lang=`` parameter (§3.3), if any."""
        return next((v for n, v in self.params if n == "lang"), None)

    def line(self) -> str:
        params = "".join(f";{n}={v}" for n, v in self.params)
        return f"{self.name}:{params} {self.value}"

    @classmethod
    def make(cls, name: str, text: str, *, lang: str | None = None) -> CpimHeader:
        """Build a header from unescaped ``text``."""
        return cls(name, escape(text), (("lang", lang),) if lang else ())


def _parse_address(header: CpimHeader) -> Address:
    m = _ADDRESS.fullmatch(header.value)
    if m is None:
        raise CpimError(f"malformed {header.name} header: {header.value!r}")
    tokens, string, uri = m.groups()
    if tokens:
        display: str | None = tokens[:-1]
    elif string:
        display = unescape(string[1:-1])
    else:
        display = None
    return Address(uri, display)


_DateTime = datetime


@dataclass(frozen=True)
class CpimMessage:
    """A message/cpim body: ordered message headers, encapsulated MIME headers and body.

    Construction validates the header syntax, resolves namespace prefixes (an
    undeclared prefix is an error, §3.4) and checks the core headers' values.
    """

    headers: tuple[CpimHeader, ...]
    content_headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    _resolved: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _required: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolved, required = _resolve(self.headers)
        object.__setattr__(self, "_resolved", resolved)
        object.__setattr__(self, "_required", required)
        for name, value in self.content_headers:
            if not _MIME_NAME.fullmatch(name) or "\r" in value or "\n" in value:
                raise CpimError(f"bad MIME header {name!r}")
        if self.content_type is None:
            raise CpimError("encapsulated MIME part has no Content-Type (RFC 3862 §2.4)")

    # -- generic access by (namespace URI, local name) --

    def resolved(self) -> Iterator[tuple[str, str, CpimHeader]]:
        """Every header with its resolved namespace URI and local name, in order."""
        for (ns, local), header in zip(self._resolved, self.headers, strict=True):
            yield ns, local, header

    def get_all(self, local: str, ns: str = CPIM_NS) -> list[CpimHeader]:
        return [h for n, lo, h in self.resolved() if n == ns and lo == local]

    def get(self, local: str, ns: str = CPIM_NS) -> CpimHeader | None:
        found = self.get_all(local, ns)
        return found[0] if found else None

    # -- core headers (§4) --

    @property
    def from_(self) -> Address | None:
        header = self.get("From")
        return _parse_address(header) if header else None

    @property
    def to(self) -> list[Address]:
        return [_parse_address(h) for h in self.get_all("To")]

    @property
    def cc(self) -> list[Address]:
        return [_parse_address(h) for h in self.get_all("cc")]

    @property
    def datetime(self) -> _DateTime | None:
        header = self.get("DateTime")
        return parse_datetime(header.value) if header else None

    @property
    def subjects(self) -> list[tuple[str, str | None]]:
        """``(text, lang)`` for each Subject header (§4.5)."""
        return [(h.text, h.lang) for h in self.get_all("Subject")]

    @property
    def ns(self) -> dict[str | None, str]:
        """Namespace declarations: prefix (None for the default) -> URI, last one wins."""
        out: dict[str | None, str] = {}
        for header in self.get_all("NS"):
            prefix, uri = _split_ns(header)
            out[prefix] = uri
        return out

    @property
    def require(self) -> tuple[tuple[str, str], ...]:
        """Required (namespace URI, local name) pairs, resolved where Require appears."""
        return self._required

    # -- encapsulated MIME part (§2.4) --

    def content_header(self, name: str) -> str | None:
        """First MIME header of the encapsulated part, name case-insensitive (RFC 2045)."""
        lname = name.lower()
        return next((v for n, v in self.content_headers if n.lower() == lname), None)

    @property
    def content_type(self) -> str | None:
        return self.content_header("Content-Type")

    @property
    def media_type(self) -> str:
        """Lowercased type/subtype of the encapsulated part, parameters dropped."""
        return (self.content_type or "").split(";", 1)[0].strip().lower()


# RFC 5322 §3.6.8: field-name = 1*ftext ; ftext = %d33-57 / %d59-126
_MIME_NAME = re.compile(r"[!-9;-~]+")


def _split_ns(header: CpimHeader) -> tuple[str | None, str]:
    m = _NS_VALUE.fullmatch(header.value)
    if m is None:
        raise CpimError(f"malformed NS header: {header.value!r}")
    if "#" in m.group(2):
        raise CpimError("NS URI must not carry a fragment (RFC 3862 §3.4)")
    return m.group(1), m.group(2)


def _resolve(
    headers: tuple[CpimHeader, ...],
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Walk the headers in order with the namespace prefixes in scope (§3.4).

    Returns each header's (namespace URI, local name) and the resolved Require list;
    core header values are syntax-checked on the way.
    """
    default = CPIM_NS
    prefixes: dict[str, str] = {}

    def resolve(name: str) -> tuple[str, str]:
        m = _HEADER_NAME.fullmatch(name)
        if m is None:
            raise CpimError(f"bad header name {name!r}")
        prefix, local = m.groups()
        if prefix is None:
            return default, local
        if prefix not in prefixes:
            raise CpimError(f"namespace prefix {prefix!r} used before its NS declaration")
        return prefixes[prefix], local

    resolved: list[tuple[str, str]] = []
    required: list[tuple[str, str]] = []
    for header in headers:
        ns, local = resolve(header.name)
        resolved.append((ns, local))
        if ns != CPIM_NS:
            continue
        if local == "NS":
            prefix, uri = _split_ns(header)
            if prefix is None:
                default = uri
            else:
                prefixes[prefix] = uri
        elif local == "Require":
            names = _REQUIRE_SPLIT.split(header.value)
            if not all(_HEADER_NAME.fullmatch(n) for n in names):
                raise CpimError(f"malformed Require header: {header.value!r}")
            required.extend(resolve(n) for n in names)
        elif local in _CORE_CHECKS:
            _CORE_CHECKS[local](header)
    return tuple(resolved), tuple(required)


def _check_datetime(header: CpimHeader) -> None:
    try:
        parse_datetime(header.value)
    except ValueError:
        raise CpimError(f"malformed DateTime header: {header.value!r}") from None


def _check_noop(header: CpimHeader) -> None:
    return None


_CORE_CHECKS: Final[dict[str, Callable[[CpimHeader], object]]] = {
    "From": _parse_address,
    "To": _parse_address,
    "cc": _parse_address,
    "DateTime": _check_datetime,
    "Subject": _check_noop,
}
_CORE_NAMES: Final = (*_CORE_CHECKS, "NS", "Require")

UNDERSTOOD_HEADERS: Final[frozenset[tuple[str, str]]] = frozenset(
    [(CPIM_NS, name) for name in _CORE_NAMES]
    + [
        (IMDN_NS, name)
        for name in (
            "Message-ID",
            "Disposition-Notification",
            "Original-To",
            "IMDN-Record-Route",
            "IMDN-Route",
        )
    ]
)
"""Headers this gateway implements: RFC 3862 §4 core headers and RFC 5438 §6 headers."""


def check_require(
    msg: CpimMessage, understood: Collection[tuple[str, str]] = UNDERSTOOD_HEADERS
) -> None:
    """Raise :class:`CpimUnsupported` if ``Require`` names something not ``understood``."""
    for ns, local in msg.require:
        if (ns, local) not in understood:
            raise CpimUnsupported(f"Require names unsupported CPIM header or feature <{ns}>{local}")


# --- Wire format ---


def _next_line(data: bytes, pos: int) -> tuple[bytes, int]:
    """The line starting at ``pos`` without its CRLF (or bare LF), and the next offset."""
    end = data.find(b"\n", pos)
    if end < 0:
        return data[pos:], len(data)
    return data[pos:end].removesuffix(b"\r"), end + 1


def _parse_message_header(line: bytes) -> CpimHeader:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CpimError("CPIM header is not UTF-8 (RFC 3862 §2.2)") from None
    if text[:1] in (" ", "\t"):
        raise CpimError("CPIM headers cannot be folded or start with whitespace (§2.2)")
    m = _HEADER.fullmatch(text)
    if m is None:
        raise CpimError(f"malformed CPIM header line {text[:80]!r} (§3.6)")
    name, params_raw, value = m.group(1), m.group(4), m.group(5)
    params = tuple((p.group(1), p.group(2)) for p in _PARAM.finditer(params_raw))
    return CpimHeader(name, value, params)


def _parse_mime_headers(data: bytes, pos: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """RFC 2045 headers of the encapsulated part up to the blank line; folding undone."""
    headers: list[tuple[str, str]] = []
    while pos < len(data):
        line, pos = _next_line(data, pos)
        if not line:
            break
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CpimError("encapsulated MIME header is not UTF-8") from None
        if text[:1] in (" ", "\t") and headers:  # RFC 5322 §2.2.3 unfolding
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not _MIME_NAME.fullmatch(name):
            raise CpimError(f"malformed MIME header line {text[:80]!r}")
        headers.append((name, value.strip()))
    return tuple(headers), pos


def parse_cpim(
    data: bytes,
    *,
    understood: Collection[tuple[str, str]] | None = UNDERSTOOD_HEADERS,
) -> CpimMessage:
    """Parse a message/cpim body (message headers, blank line, MIME part).

    ``understood=None`` skips the ``Require`` check (for pure relaying).
    Raises :class:`CpimError` / :class:`CpimUnsupported`.
    """
    headers: list[CpimHeader] = []
    pos = 0
    blank = False
    while pos < len(data) and not blank:
        line, pos = _next_line(data, pos)
        if line:
            headers.append(_parse_message_header(line))
        else:
            blank = True
    if not blank:
        raise CpimError("message/cpim has no blank line before the MIME part (§2)")
    if not headers:
        raise CpimError("message/cpim has no message headers")
    content_headers, body_start = _parse_mime_headers(data, pos)
    msg = CpimMessage(tuple(headers), content_headers, data[body_start:])
    if understood is not None:
        check_require(msg, understood)
    return msg


def build_cpim(msg: CpimMessage) -> bytes:
    """Serialize with CRLF line ends; the body bytes are appended untouched."""
    head = "".join(h.line() + "\r\n" for h in msg.headers) + "\r\n"
    mime = "".join(f"{n}: {v}\r\n" for n, v in msg.content_headers) + "\r\n"
    return (head + mime).encode("utf-8") + msg.body


def new_cpim(
    *,
    from_: Address,
    to: Iterable[Address],
    content_type: str,
    body: bytes,
    sent: datetime | None = None,
    subjects: Iterable[tuple[str, str | None]] = (),
    extra: Iterable[CpimHeader] = (),
    content_headers: Iterable[tuple[str, str]] = (),
) -> CpimMessage:
    """Convenience constructor: From, To..., DateTime, Subject..., ``extra`` in that order."""
    headers = [CpimHeader("From", from_.render())]
    headers += [CpimHeader("To", a.render()) for a in to]
    if sent is not None:
        headers.append(CpimHeader("DateTime", format_datetime(sent)))
    headers += [CpimHeader.make("Subject", text, lang=lang) for text, lang in subjects]
    headers += extra
    mime = (("Content-Type", content_type), *content_headers)
    return CpimMessage(tuple(headers), mime, body)
