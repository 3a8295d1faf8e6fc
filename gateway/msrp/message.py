"""The MSRP message model (RFC 4975 §7, §9; RFC 4976 §7): frozen requests and responses.

A message keeps its header fields as written, in order (`headers`, To-Path and From-Path
included), so `serializer.serialize(parser.parse_message(x)) == x` for every message the
parser accepts. Typed views (`to_path`, `message_id`, `byte_range`, `status`...) parse the
raw values; the parser has already checked them, so on a parsed message they cannot fail.
`body` is None for a bodiless request (no Content-Type, §7.1), bytes otherwise (possibly
empty). `flag` is the end-line's continuation flag: `$` last chunk, `+` more to come,
`#` aborted (§7.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Literal, TypeAlias

from gateway.msrp.errors import LocalProtocolError, RemoteProtocolError
from gateway.msrp.uri import MsrpUri, parse_uri

__all__ = [
    "ABORT",
    "END",
    "KNOWN_METHODS",
    "MAX_NON_SEND_BODY",
    "MORE",
    "ByteRange",
    "Flag",
    "MsrpMessage",
    "MsrpRequest",
    "MsrpResponse",
    "Status",
    "check_header",
    "parse_byte_range",
    "parse_path",
    "parse_status",
    "request_problem",
]

Flag: TypeAlias = Literal["$", "+", "#"]
END: Final = "$"
MORE: Final = "+"
ABORT: Final = "#"
FLAGS: Final = frozenset("$+#")

# SEND and REPORT (RFC 4975), AUTH (RFC 4976 §5); anything else is answered 501 (§10.9).
KNOWN_METHODS: Final = frozenset({"SEND", "REPORT", "AUTH"})
MAX_NON_SEND_BODY: Final = 10240  # §7.1: non-SEND request bodies MUST NOT be larger

# ident = ALPHANUM 3*31ident-char ; ident-char = ALPHANUM / "." / "-" / "+" / "%" / "="
ident_re = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}")
method_re = re.compile(r"[A-Z]+")
# hname = ALPHA *token ; hval = utf8text = *(HTAB / %x20-7E / UTF8-NONASCII)
hname_re = re.compile(r"[A-Za-z][!#$%&'*+\-.^_`|~0-9A-Za-z]*")
hval_re = re.compile(r"[\t\x20-\x7e\x80-\ud7ff\ue000-\U0010ffff]*")  # no surrogates
_byte_range_re = re.compile(r"([0-9]{1,19})-([0-9]{1,19}|\*)/([0-9]{1,19}|\*)")
_status_re = re.compile(r"([0-9]{3}) ([0-9]{3})(?: (.*))?", re.DOTALL)
_digits_re = re.compile(r"[0-9]{1,10}")

HeaderPair: TypeAlias = tuple[str, str]
SINGLETON_HEADERS: Final = frozenset(
    {"to-path", "from-path", "message-id", "byte-range", "success-report", "failure-report",
     "status", "content-type", "expires", "min-expires", "max-expires", "use-path"}
)  # fmt: skip


@dataclass(frozen=True)
class ByteRange:
    """Byte-Range: range-start "-" range-end "/" total; 1-based, inclusive (§7.1.1).
    `end` / `total` None stand for "*"; an empty message is 1-0/0."""

    start: int
    end: int | None
    total: int | None

    def __post_init__(self) -> None:
        if self.start < 1:
            raise LocalProtocolError(f"range-start must be >= 1: {self}")
        if self.end is not None and self.end < self.start - 1:
            raise LocalProtocolError(f"range-end before range-start: {self}")
        if self.total is not None and self.end is not None and self.end > self.total:
            raise LocalProtocolError(f"range-end beyond total: {self}")

    def __str__(self) -> str:
        end = "*" if self.end is None else str(self.end)
        total = "*" if self.total is None else str(self.total)
        return f"{self.start}-{end}/{total}"


def parse_byte_range(value: str) -> ByteRange:
    m = _byte_range_re.fullmatch(value)
    if m is None:
        raise RemoteProtocolError(f"malformed Byte-Range {value[:60]!r}")
    start = int(m[1])
    end = None if m[2] == "*" else int(m[2])
    total = None if m[3] == "*" else int(m[3])
    try:
        return ByteRange(start, end, total)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"inconsistent Byte-Range {value!r}: {exc}") from None


@dataclass(frozen=True)
class Status:
    """Status: namespace SP status-code [SP comment] (§7.1.3); namespace 000 means the
    code reads as a transaction response code."""

    namespace: str
    code: int
    comment: str | None = None

    def __str__(self) -> str:
        text = f"{self.namespace} {self.code:03d}"
        return text if self.comment is None else f"{text} {self.comment}"


def parse_status(value: str) -> Status:
    m = _status_re.fullmatch(value)
    if m is None:
        raise RemoteProtocolError(f"malformed Status {value[:60]!r}")
    return Status(m[1], int(m[2]), m[3])


def parse_path(value: str) -> tuple[MsrpUri, ...]:
    """To-Path / From-Path / Use-Path: MSRP-URI *( SP MSRP-URI )."""
    parts = value.split(" ")
    if not value or "" in parts:
        raise RemoteProtocolError(f"malformed path {value[:80]!r}")
    return tuple(parse_uri(p) for p in parts)


def check_header(name: str, value: str) -> None:
    """The §9 grammar for one header field (LocalProtocolError: never emit a broken one)."""
    if hname_re.fullmatch(name) is None or hval_re.fullmatch(value) is None:
        raise LocalProtocolError(f"invalid header field {name!r}: {value[:60]!r}")
    if value[:1] in (" ", "\t"):  # the parser skips white space after the colon
        raise LocalProtocolError(f"header {name} value starts with white space")


class _Fields:
    """Typed views shared by requests and responses (names compare case-insensitively)."""

    headers: tuple[HeaderPair, ...]

    @cached_property
    def _first_values(self) -> dict[str, str]:
        """Lower-cased name -> first value, built once per (immutable) message: the views
        below and `request_problem` look fields up dozens of times per message."""
        index: dict[str, str] = {}
        for n, v in self.headers:
            index.setdefault(n.lower(), v)
        return index

    def get(self, name: str) -> str | None:
        """The first value of header `name`, or None."""
        return self._first_values.get(name.lower())

    @property
    def to_path(self) -> tuple[MsrpUri, ...]:
        return parse_path(self.get("To-Path") or "")

    @property
    def from_path(self) -> tuple[MsrpUri, ...]:
        return parse_path(self.get("From-Path") or "")

    @property
    def message_id(self) -> str | None:
        return self.get("Message-ID")


@dataclass(frozen=True)
class MsrpRequest(_Fields):
    """SEND, REPORT, AUTH or an extension method (answered 501 by endpoints)."""

    transaction_id: str
    method: str
    headers: tuple[HeaderPair, ...]
    body: bytes | None = None
    flag: Flag = "$"

    @property
    def byte_range(self) -> ByteRange | None:
        value = self.get("Byte-Range")
        return None if value is None else parse_byte_range(value)

    @property
    def success_report(self) -> bool:
        """Success-Report: absent means "no" (§7.1.1)."""
        return (self.get("Success-Report") or "no") == "yes"

    @property
    def failure_report(self) -> str:
        """Failure-Report: "yes" (the default, §7.1.1), "no" or "partial"."""
        return self.get("Failure-Report") or "yes"

    @property
    def status(self) -> Status | None:
        value = self.get("Status")
        return None if value is None else parse_status(value)

    @property
    def content_type(self) -> str | None:
        return self.get("Content-Type")

    @property
    def use_path(self) -> tuple[MsrpUri, ...] | None:
        value = self.get("Use-Path")
        return None if value is None else parse_path(value)

    @property
    def expires(self) -> int | None:
        value = self.get("Expires")
        return None if value is None else int(value)

    @property
    def complete(self) -> bool:
        """The whole message in one request (§7.3.1): no Byte-Range or range-start 1, "$"."""
        br = self.byte_range
        return self.flag == END and (br is None or br.start == 1)

    @classmethod
    def build(
        cls,
        transaction_id: str,
        method: str,
        to_path: Iterable[MsrpUri],
        from_path: Iterable[MsrpUri],
        headers: Iterable[HeaderPair] = (),
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        flag: Flag = "$",
    ) -> MsrpRequest:
        """A request in §7.1 order: To-Path, From-Path, `headers`, then Content-Type last
        when there is a body (and only then)."""
        if (body is None) != (content_type is None):
            raise LocalProtocolError("a body needs a Content-Type, and only a body (§7.1)")
        pairs = [
            ("To-Path", " ".join(map(str, to_path))),
            ("From-Path", " ".join(map(str, from_path))),
            *headers,
        ]
        if content_type is not None:
            pairs.append(("Content-Type", content_type))
        request = cls(transaction_id, method, tuple(pairs), body, flag)
        request.check()
        return request

    def check(self) -> None:
        """LocalProtocolError unless this request serializes to something the §9 grammar
        accepts (and our parser reads back to an equal request)."""
        _check_common(self.transaction_id, self.headers, self.flag)
        if method_re.fullmatch(self.method) is None:
            raise LocalProtocolError(f"invalid method {self.method!r}")
        problem = request_problem(self)
        if problem is not None:
            raise LocalProtocolError(problem[0])
        if self.body is not None and contains_end_line(self.body, self.transaction_id):
            raise LocalProtocolError("the body contains the end-line: choose another id (§7.1)")


@dataclass(frozen=True)
class MsrpResponse(_Fields):
    """A transaction response: never chunked, never a body (§7.2, §9)."""

    transaction_id: str
    code: int
    comment: str | None
    headers: tuple[HeaderPair, ...]
    flag: Flag = "$"

    def check(self) -> None:
        _check_common(self.transaction_id, self.headers, self.flag)
        if not 0 <= self.code <= 999:
            raise LocalProtocolError(f"invalid status code {self.code}")
        if self.comment is not None and (
            not self.comment or hval_re.fullmatch(self.comment) is None
        ):
            raise LocalProtocolError(f"invalid comment {self.comment!r}")


MsrpMessage: TypeAlias = MsrpRequest | MsrpResponse


def request_problem(request: MsrpRequest) -> tuple[str, int] | None:
    """What makes a request unacceptable beyond the line grammar, with the status to answer
    (the parser's and `check`'s single rule book, so what we build the parser reads back):
    Content-Type last and only with a body (§7.1); a non-SEND body at most 10240 octets
    (§7.1; 413); a Message-ID on SEND and REPORT (§7.1.1, §7.1.2); Success-Report and
    Failure-Report values (§9); REPORT with a Status and without Success-/Failure-Report
    (§7.1.2); Status, Expires, Min-/Max-Expires, Use-Path and Byte-Range values (§9,
    RFC 4976 §7); each singleton header field once."""
    headers = request.headers
    seen: set[str] = set()
    for name, _ in headers:
        key = name.lower()
        if key in SINGLETON_HEADERS and key in seen:
            return f"{name} more than once", 400
        seen.add(key)
    has_type = headers[-1][0].lower() == "content-type"
    if request.body is None and "content-type" in seen:
        return "Content-Type without a body (§7.1)", 400
    if request.body is not None and not has_type:
        return "a body needs Content-Type as the last header field (§7.1)", 400
    method = request.method
    size = 0 if request.body is None else len(request.body)
    if method != "SEND" and size > MAX_NON_SEND_BODY:
        return f"{method} body over {MAX_NON_SEND_BODY} octets (§7.1)", 413
    if method in ("SEND", "REPORT"):
        mid = request.message_id
        if mid is None or ident_re.fullmatch(mid) is None:
            return f"{method} without a valid Message-ID (§7.1.1)", 400
    if request.get("Success-Report") not in (None, "yes", "no"):
        return "bad Success-Report", 400
    if request.get("Failure-Report") not in (None, "yes", "no", "partial"):
        return "bad Failure-Report", 400
    if method == "REPORT":
        if request.get("Status") is None:
            return "REPORT without Status (§7.1.2)", 400
        if request.get("Success-Report") or request.get("Failure-Report"):
            return "REPORT with Success-/Failure-Report (§7.1.2)", 400
    for name in ("Expires", "Min-Expires", "Max-Expires"):
        value = request.get(name)
        if value is not None and _digits_re.fullmatch(value) is None:
            return f"bad {name}", 400
    try:
        request.status  # noqa: B018
        request.use_path  # noqa: B018
        request.byte_range  # noqa: B018
    except RemoteProtocolError as exc:
        return exc.message, 400
    return None


def _check_common(transaction_id: str, headers: tuple[HeaderPair, ...], flag: str) -> None:
    if ident_re.fullmatch(transaction_id) is None:
        raise LocalProtocolError(f"invalid transaction id {transaction_id!r}")
    if flag not in FLAGS:
        raise LocalProtocolError(f"invalid continuation flag {flag!r}")
    if len(headers) < 2 or [n.lower() for n, _ in headers[:2]] != ["to-path", "from-path"]:
        raise LocalProtocolError("To-Path and From-Path come first (§9)")
    for name, value in headers:
        check_header(name, value)
    try:
        parse_path(headers[0][1])
        parse_path(headers[1][1])
    except RemoteProtocolError as exc:
        raise LocalProtocolError(exc.message) from None


def end_line(transaction_id: str, flag: str) -> bytes:
    """end-line = "-------" transact-id continuation-flag CRLF (§9)."""
    return b"-------" + transaction_id.encode("ascii") + flag.encode("ascii") + b"\r\n"


def contains_end_line(body: bytes, transaction_id: str) -> bool:
    """Whether `body` holds "-------" + id + a flag anywhere (§7.1: then the receiver
    would end the request early). The CRLF the serializer puts before the end-line
    means no match can straddle the body's end, so this check is exact."""
    marker = b"-------" + transaction_id.encode("ascii")
    at = body.find(marker)
    while at >= 0:
        nxt = at + len(marker)
        if nxt < len(body) and body[nxt : nxt + 1] in (b"$", b"+", b"#"):
            return True
        at = body.find(marker, at + 1)
    return False
