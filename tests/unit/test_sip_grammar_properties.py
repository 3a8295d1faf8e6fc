"""The SIP parser against the grammar of RFC 3261 §25 (issue 25: replaces the frozen-copy
oracle of issue 11).

Hypothesis writes messages from the ABNF, in the spellings the grammar allows (compact and
odd-case header names, HCOLON and SEMI white space, folded LWS, quoted display names with
quoted-pairs, %HH escapes, IPv6 references, comma lists and repeated lines), and keeps the
values it put in. Properties:

- what the grammar generates parses, and every typed view equals the generated value;
- parse -> serialize -> parse is a fixed point (what we accept, we forward unchanged);
- header lookups are case-insensitive and accept compact forms (§7.3.1, §7.3.3);
- the parser's fast header split (`_split_fast`) and its general one (`_split_headers`)
  agree wherever the fast one answers;
- one broken rule (bare CR/LF in a value, a bad token character, a missing colon, a bad
  CSeq or Max-Forwards, another SIP version, a duplicate singleton, a short body...) is
  refused: 400/505/501 with the headers read so far for a request, DropMessage for a
  response (RFC 4475 §3.1.2).
The RFC 4475 vectors themselves are tests/unit/test_rfc4475.py.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.abnf import fold_re
from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.headers import COMPACT_FORMS, parse_name_addr, parse_via
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.parser import _split_fast, _split_headers, parse_message
from gateway.sip.serializer import serialize
from gateway.sip.uri import SipUri, parse_uri

GRAMMAR = settings(max_examples=200, deadline=None)

# -- RFC 3261 §25.1 character classes --------------------------------------------------------

ALPHANUM = string.ascii_letters + string.digits
MARK = "-_.!~*'()"
UNRESERVED = ALPHANUM + MARK
TOKEN_CHARS = ALPHANUM + "-.!%*_+`'~"
USER_UNRESERVED = "&=+$,;?/"
PASSWORD_CHARS = "&=+$,"
PARAM_UNRESERVED = "[]/:&+$"
HNV_UNRESERVED = "[]/?:+$"
SEPARATORS = '()<>@,;:\\"/[]?={} \t'

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=8)
# TEXT-UTF8char / SP (§25.1): printable ASCII and non-ASCII, never a control or DEL
TEXT_UTF8 = st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f")
ws = st.sampled_from(["", "", " ", "\t", "  "])  # SWS
lws = st.sampled_from([" ", " ", "\t", "  ", "\r\n ", " \r\n\t"])  # LWS, folds included


def escaped(allowed: str, *, min_size: int = 0) -> st.SearchStrategy[tuple[str, str]]:
    """(wire text, decoded text): characters of `allowed` written as they are or as %HH,
    anything else (non-ASCII too) always as the %HH of its UTF-8 octets (§19.1.2)."""

    def write(chars: list[tuple[str, bool]]) -> tuple[str, str]:
        wire = "".join(
            c if c in allowed and not esc else "".join(f"%{b:02X}" for b in c.encode())
            for c, esc in chars
        )
        return wire, "".join(c for c, _ in chars)

    char = st.sampled_from(allowed) | TEXT_UTF8
    return st.lists(
        st.tuples(char.filter(lambda c: c != "%"), st.integers(0, 5).map(lambda i: i == 0)),
        min_size=min_size,
        max_size=8,
    ).map(write)


# hostname labels: alphanum, inner hyphens (§25.1 domainlabel / toplabel)
_label = st.tuples(
    st.sampled_from(string.ascii_letters),
    st.text(ALPHANUM + "-", max_size=5),
    st.sampled_from(ALPHANUM),
).map("".join)
hostnames = st.lists(_label, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6_refs = st.sampled_from(["[::1]", "[2001:db8::10]", "[::ffff:192.0.2.4]", "[FE80::1]"])
hosts = hostnames | ipv4 | ipv6_refs
ports = st.none() | st.integers(0, 65535)


@dataclass(frozen=True)
class GenUri:
    """A generated SIP-URI: its text and the fields the parser must find."""

    text: str
    scheme: str
    user: str | None
    user_decoded: str | None
    password: str | None
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...]
    headers: tuple[tuple[str, str], ...]

    @property
    def plain(self) -> bool:
        """Usable as an addr-spec without <> (§20.10: no comma, question mark or semicolon)."""
        return not any(c in self.text for c in ",;?")


@st.composite
def sip_uris(draw: st.DrawFn, *, headers_allowed: bool = True) -> GenUri:
    scheme = draw(st.sampled_from(["sip", "sips"]))
    written_scheme = "".join(draw(st.sampled_from([c, c.upper()])) for c in scheme)
    user = decoded = password = None
    userinfo = ""
    if draw(st.booleans()):
        user, decoded = draw(escaped(UNRESERVED + USER_UNRESERVED, min_size=1))
        userinfo = user
        if draw(st.integers(0, 4)) == 0:
            password = draw(escaped(UNRESERVED + PASSWORD_CHARS))[0]
            userinfo += ":" + password
        userinfo += "@"
    host, port = draw(hosts), draw(ports)
    pchar = UNRESERVED + PARAM_UNRESERVED
    params = tuple(
        draw(
            st.lists(
                st.tuples(
                    escaped(pchar, min_size=1).map(lambda t: t[0]),
                    st.none() | escaped(pchar, min_size=1).map(lambda t: t[0]),
                )
                | st.sampled_from([("lr", None), ("transport", "tcp"), ("user", "phone")]),
                max_size=3,
            )
        )
    )
    hchar = UNRESERVED + HNV_UNRESERVED
    headers = tuple(
        draw(
            st.lists(
                st.tuples(
                    escaped(hchar, min_size=1).map(lambda t: t[0]),
                    escaped(hchar).map(lambda t: t[0]),
                ),
                max_size=2 if headers_allowed else 0,
            )
        )
    )
    text = f"{written_scheme}:{userinfo}{host}" + ("" if port is None else f":{port}")
    text += "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)
    if headers:
        text += "?" + "&".join(f"{n}={v}" for n, v in headers)
    return GenUri(text, scheme, user, decoded, password, host, port, params, headers)


def assert_uri(uri: object, gen: GenUri) -> None:
    assert isinstance(uri, SipUri), gen.text
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        gen.scheme,
        gen.user,
        gen.password,
        gen.host,
        gen.port,
    )
    assert uri.params == gen.params
    assert uri.headers == gen.headers
    assert uri.user_decoded == gen.user_decoded  # escapes decoded (§19.1.2)
    assert uri.lr == any(n == "lr" for n, _ in gen.params)


@GRAMMAR
@given(sip_uris())
def test_sip_uri_fields_and_round_trip(gen: GenUri) -> None:
    uri = parse_uri(gen.text)
    assert_uri(uri, gen)
    assert parse_uri(str(uri)) == uri  # the scheme is written lower-case, nothing else moves


@pytest.mark.parametrize(
    "text",
    [
        "sip:",  # hostport is required
        "sip:a b@host",  # SP is not in user
        "sip:alice@",
        "sip:alice@host:65536",  # port beyond 16 bits
        "sip:alice@host:",
        "sip:alice@ho_st",  # "_" is not in a hostname
        "sip:alice@[::1",
        "sip:alice@host;=x",  # pname = 1*paramchar
        "sip:alice@host?novalue",  # header = hname "=" hvalue
        "sip:al%zzice@host",  # escaped = "%" HEXDIG HEXDIG
        "sip:alice@host;a<b",
        "tel:",
        "nocolon",
    ],
)
def test_uri_outside_the_grammar_is_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status == 400


# -- Via (§20.42, §18.2.1, RFC 3581) -----------------------------------------------------------


@dataclass(frozen=True)
class GenVia:
    text: str
    transport: str
    host: str
    port: int | None
    branch: str | None
    received: str | None
    rport: int | None
    rport_requested: bool


other_params = tokens.filter(lambda t: t.lower() not in ("branch", "received", "rport", "tag"))


@st.composite
def vias(draw: st.DrawFn) -> GenVia:
    slash = draw(st.sampled_from(["/", "/", " / ", "\t/ "]))  # SLASH = SWS "/" SWS
    name = draw(st.sampled_from(["SIP", "sip", "Sip"]))
    transport = draw(st.sampled_from(["UDP", "tcp", "Tls", "SCTP", "WS"]) | tokens)
    host, port = draw(hosts), draw(ports)
    branch = draw(st.none() | tokens.map(lambda t: "z9hG4bK" + t))
    received = draw(st.none() | ipv4 | st.sampled_from(["2001:db8::9", "::1"]))
    rport = draw(st.sampled_from([None, "", "5060", "1"]))
    params = []
    if branch is not None:
        params.append(f"branch={branch}")
    if received is not None:
        params.append(f"received={received}")
    if rport is not None:
        params.append("rport" + (f"={rport}" if rport else ""))
    params += [f"{n}={v}" for n, v in draw(st.lists(st.tuples(other_params, tokens), max_size=2))]
    params = draw(st.permutations(params))
    semi = draw(st.sampled_from([";", ";", " ;", "; ", " ; "]))  # SEMI = SWS ";" SWS
    text = f"{name}{slash}2.0{slash}{transport}{draw(lws)}{host}"
    text += ("" if port is None else f":{port}") + "".join(semi + p for p in params)
    return GenVia(
        text,
        transport.upper(),
        host,
        port,
        branch,
        received,
        int(rport) if rport else None,
        rport is not None,
    )


def assert_via(via: Any, gen: GenVia) -> None:
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        gen.transport,
        gen.host,
        gen.port,
    ), gen.text
    assert (via.branch, via.received, via.rport) == (gen.branch, gen.received, gen.rport)
    assert via.rport_requested == gen.rport_requested


@GRAMMAR
@given(st.lists(vias(), min_size=1, max_size=3), st.sampled_from([",", " , ", ",\t"]))
def test_via_list(gens: list[GenVia], comma: str) -> None:
    text = comma.join(fold_re.sub(" ", g.text) for g in gens)  # LWS arrives unfolded
    parsed = parse_via(text)
    assert len(parsed) == len(gens)
    for via, gen in zip(parsed, gens, strict=True):
        assert_via(via, gen)
        assert_via(parse_via(str(via))[0], gen)  # written back, read again: the same


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0 host",  # sent-protocol needs the transport
        "SIP/2.0/UDP",  # sent-by is required
        "SIP/2.0/UDPhost",  # LWS between them
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/U@P host",
    ],
)
def test_via_outside_the_grammar_is_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_via(text)
    assert info.value.status == 400


# -- name-addr / addr-spec (§20.10, §20.20, §20.39) --------------------------------------------

display_texts = st.text(
    TEXT_UTF8 | st.sampled_from('"\\\t'),
    max_size=12,
)


@st.composite
def quoted_strings(draw: st.DrawFn) -> tuple[str, str]:
    """(quoted-string, its text): DQUOTE and backslash always as quoted-pairs, other ASCII
    sometimes (quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F))."""
    text = draw(display_texts)
    out = []
    for c in text:
        if c in '"\\' or (c.isascii() and draw(st.integers(0, 9)) == 0):
            out.append("\\" + c)
        else:
            out.append(c)
    return '"' + "".join(out) + '"', text


@dataclass(frozen=True)
class GenAddr:
    text: str
    uri: GenUri
    display: str | None
    tag: str | None


@st.composite
def name_addrs(draw: st.DrawFn, *, tagged: bool = False) -> GenAddr:
    uri = draw(sip_uris())
    tag = draw(tokens if tagged else st.none() | tokens)
    params = [] if tag is None else [f"tag={tag}"]
    params += [f"{n}={v}" for n, v in draw(st.lists(st.tuples(other_params, tokens), max_size=2))]
    params = draw(st.permutations(params))
    semi = draw(st.sampled_from([";", " ;", "; "]))
    tail = "".join(semi + p for p in params)
    form = draw(st.sampled_from(["quoted", "tokens", "bare-angle", "addr-spec"]))
    if form == "addr-spec" and uri.plain:
        return GenAddr(uri.text + tail, uri, None, tag)
    if form == "quoted":
        quoted, display = draw(quoted_strings())
        return GenAddr(f"{quoted}{draw(ws)}<{uri.text}>{tail}", uri, display, tag)
    if form == "tokens":
        display = " ".join(draw(st.lists(tokens, min_size=1, max_size=3)))
        return GenAddr(f"{display}{draw(lws)}<{uri.text}>{tail}", uri, display, tag)
    return GenAddr(f"<{uri.text}>{tail}", uri, None, tag)


def assert_addr(addr: Any, gen: GenAddr) -> None:
    assert_uri(addr.uri, gen.uri)
    assert (addr.display_name, addr.tag) == (gen.display, gen.tag), gen.text


@GRAMMAR
@given(name_addrs())
def test_name_addr_fields_and_round_trip(gen: GenAddr) -> None:
    addr = parse_name_addr(fold_re.sub(" ", gen.text))
    assert_addr(addr, gen)
    assert parse_name_addr(str(addr)) == addr


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        "<sip:a@b",
        "<sip:a b@c>",
        "A <sip:a@b>>",
        "<sip:a@b>;tag=x y",
        "<>",
        '"a" "b" <sip:a@b>',
    ],
)
def test_name_addr_outside_the_grammar_is_400(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_name_addr(text)
    assert info.value.status == 400


# -- whole messages (§7, §25.1) ----------------------------------------------------------------


@dataclass
class GenMessage:
    """A generated message as lines, with what the parser must find in it."""

    start: str
    lines: list[tuple[str, str]]  # (written name, written value)
    body: bytes
    method: str | None
    status: int | None = None
    reason: str = ""
    uri: GenUri | None = None
    vias: list[GenVia] = field(default_factory=list)
    from_: GenAddr | None = None
    to: GenAddr | None = None
    call_id: str = ""
    cseq: tuple[int, str] = (0, "")
    max_forwards: int | None = None
    extensions: list[tuple[str, str]] = field(default_factory=list)

    def wire(self) -> bytes:
        head = "\r\n".join([self.start, *(f"{n}{v}" for n, v in self.lines)])
        return head.encode("utf-8", "surrogateescape") + b"\r\n\r\n" + self.body


LONG = {v: k for k, v in COMPACT_FORMS.items()}
METHODS = ["MESSAGE", "OPTIONS", "SUBSCRIBE", "NOTIFY", "REGISTER", "INVITE", "X-NEW"]


def spell(draw: st.DrawFn, name: str) -> str:
    """A header name as a sender may write it: any case, compact form, then HCOLON."""
    forms = [name, name.lower(), name.upper()]
    if name in LONG:
        forms.append(LONG[name])
    return draw(st.sampled_from(forms)) + draw(st.sampled_from([":", ": ", ":\t", " : ", ":  "]))


@st.composite
def messages(draw: st.DrawFn, *, request: bool | None = None) -> GenMessage:
    is_request = draw(st.booleans()) if request is None else request
    method = draw(st.sampled_from(METHODS))
    body = draw(st.binary(max_size=30))
    if is_request:
        uri = draw(sip_uris(headers_allowed=False))  # §19.1.5: none in a R-URI
        gen = GenMessage(f"{method} {uri.text} SIP/2.0", [], body, method, uri=uri)
    else:
        status = draw(st.integers(100, 699))
        reason = draw(st.text(TEXT_UTF8, max_size=12))
        gen = GenMessage(f"SIP/2.0 {status} {reason}", [], body, None, status, reason)
    # (canonical name, written name, written value, the Vias of a Via line)
    lines: list[tuple[str, str, str, list[GenVia]]] = []
    for _ in range(draw(st.integers(1, 2))):
        group = draw(st.lists(vias(), min_size=1, max_size=2))
        lines.append(("Via", spell(draw, "Via"), ", ".join(v.text for v in group), group))
    gen.from_ = draw(name_addrs(tagged=True))
    gen.to = draw(name_addrs())
    lines.append(("From", spell(draw, "From"), gen.from_.text, []))
    lines.append(("To", spell(draw, "To"), gen.to.text, []))
    gen.call_id = draw(tokens) + draw(st.sampled_from(["", "@" + draw(hostnames)]))
    lines.append(("Call-ID", spell(draw, "Call-ID"), gen.call_id, []))
    gen.cseq = (draw(st.integers(0, 2**32 - 1)), method)
    lines.append(("CSeq", spell(draw, "CSeq"), f"{gen.cseq[0]}{draw(lws)}{method}", []))
    if is_request:
        gen.max_forwards = draw(st.integers(0, 255))
        value = draw(st.sampled_from(["", "0", "00"])) + str(gen.max_forwards)
        lines.append(("Max-Forwards", spell(draw, "Max-Forwards"), value, []))
    for name in draw(st.lists(tokens.map(lambda t: "X-" + t), max_size=3, unique_by=str.lower)):
        value = draw(st.text(TEXT_UTF8.filter(lambda c: c != " "), max_size=10))
        gen.extensions.append((name, value))
        lines.append((name, name + draw(st.sampled_from([":", ": "])), value, []))
    lines.append(("Content-Length", spell(draw, "Content-Length"), str(len(body)), []))
    lines = draw(st.permutations(lines))
    gen.lines = [(written, value) for _, written, value, _ in lines]
    gen.vias = [v for _, _, _, group in lines for v in group]
    return gen


def assert_message(m: Any, gen: GenMessage) -> None:
    if gen.method is not None:
        assert isinstance(m, SipRequest)
        assert m.method == gen.method
        assert gen.uri is not None
        assert_uri(m.uri, gen.uri)
        assert m.max_forwards == gen.max_forwards
    else:
        assert isinstance(m, SipResponse)
        assert (m.status, m.reason) == (gen.status, gen.reason)
    assert len(m.vias) == len(gen.vias)
    for via, expected in zip(m.vias, gen.vias, strict=True):
        assert_via(via, expected)
    assert gen.from_ is not None
    assert gen.to is not None
    assert_addr(m.from_, gen.from_)
    assert_addr(m.to, gen.to)
    assert (m.from_tag, m.to_tag) == (gen.from_.tag, gen.to.tag)
    assert m.call_id == gen.call_id
    assert (m.cseq.seq, m.cseq.method) == gen.cseq
    assert m.content_length == len(gen.body)
    assert m.body == gen.body
    for name, value in gen.extensions:  # unknown names kept verbatim, values stripped
        assert m.headers.get_all(name) == (value,)


MESSAGES = settings(max_examples=80, deadline=None)


@MESSAGES
@given(messages(), st.sampled_from(["Via", "From", "To", "Call-ID", "CSeq", "Content-Length"]))
def test_generated_message(gen: GenMessage, name: str) -> None:
    """One generated message, four properties: it parses to what was generated; parse ->
    serialize -> parse is a fixed point; header lookups ignore case and accept compact
    forms (§7.3.1, §7.3.3); the fast and the general header split agree."""
    m = parse_message(gen.wire())
    assert_message(m, gen)

    wire = serialize(m)
    again = parse_message(wire)
    assert again == m
    assert serialize(again) == wire
    assert_message(again, gen)
    names = [line.split(":", 1)[0] for line in _head_lines(wire)[1:]]
    assert all(len(n) > 1 for n in names)  # canonical long names go out (§7.3.3)

    h = m.headers
    spellings = {name, name.lower(), name.upper()}
    spellings |= {c for c, n in COMPACT_FORMS.items() if n == name}
    answers = {(h.get(s), h.get_all(s), h.values(s), h.count(s), s in h) for s in spellings}
    assert len(answers) == 1
    ((first, every, _, count, present),) = answers
    assert present and count == len(every) >= 1 and first == every[0]
    assert name in [n for n, _ in h.items()]  # stored under its canonical name

    lines = _head_lines(gen.wire())
    fast = _split_fast(lines)
    pairs, problem = _split_headers(lines[1:])
    assert problem is None
    # a clean head whose names end at the colon takes the fast path; white space before
    # the colon (HCOLON) sends it to the general one
    plain = all(not w.split(":")[0].endswith((" ", "\t")) for w, _ in gen.lines)
    assert (fast is not None) == plain
    if fast is not None:
        headers, values = fast
        assert headers == Headers._trusted(tuple(pairs))
        assert headers.keys() == tuple(n.lower() for n, _ in pairs)
        assert values == [v for _, v in pairs]


def _head_lines(wire: bytes) -> list[str]:
    head = wire.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    return fold_re.sub(" ", head).split("\r\n")


@GRAMMAR
@given(
    st.lists(
        st.tuples(
            st.text(TOKEN_CHARS + SEPARATORS + "é", min_size=0, max_size=6),
            st.sampled_from([":", " :", "", "::"]),
            st.text(string.printable.replace("\r", "").replace("\n", ""), max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fast_split_declines_or_agrees(lines: list[tuple[str, str, str]]) -> None:
    """On arbitrary header lines the fast split either gives up (None) or gives exactly the
    general split's pairs, and it never accepts a line the general split calls malformed."""
    text = ["MESSAGE sip:a@b SIP/2.0", *(n + c + v for n, c, v in lines)]
    fast = _split_fast(text)
    pairs, problem = _split_headers(text[1:])
    if fast is not None:
        assert problem is None
        assert fast[0] == Headers._trusted(tuple(pairs))
        assert fast[0].keys() == tuple(n.lower() for n, _ in pairs)


# -- one rule broken -----------------------------------------------------------------------------


def _replace_line(gen: GenMessage, canon: str, new: str | None) -> GenMessage:
    """A copy with the first `canon` header line's value replaced (None: line dropped)."""
    lines = list(gen.lines)
    for i, (written, _) in enumerate(lines):
        name = written.split(":")[0].strip(" \t")
        if COMPACT_FORMS.get(name, name).lower() == canon.lower():
            if new is None:
                del lines[i]
            else:
                lines[i] = (written, new)
            break
    return GenMessage(gen.start, lines, gen.body, gen.method, gen.status, gen.reason)


NAME_BREAKERS = list('()<>@,;\\"/[]?={}')  # separators: not token characters

MUTATIONS: dict[str, Any] = {
    # bare CR or LF inside a value (§7.3.1: only CRLF followed by WSP continues a line)
    "bare CR in a value": lambda g, d: _insert(g, d, "\r"),
    "bare LF in a value": lambda g, d: _insert(g, d, "\n"),
    # header-name = token
    "separator in a header name": lambda g, d: _with_lines(
        g, [("X-A" + d(st.sampled_from(NAME_BREAKERS)) + "B: v", "")]
    ),
    "missing colon": lambda g, d: _with_lines(g, [("X-No-Colon value", "")]),
    "empty header name": lambda g, d: _with_lines(g, [(": value", "")]),
    # CSeq = 1*DIGIT LWS Method, the number within 32 bits (§8.1.1.5)
    "CSeq not a number": lambda g, d: _replace_line(g, "CSeq", f"x {g.cseq[1]}"),
    "CSeq beyond 32 bits": lambda g, d: _replace_line(g, "CSeq", f"{2**32} {g.cseq[1]}"),
    "CSeq without method": lambda g, d: _replace_line(g, "CSeq", "1"),
    "CSeq negative": lambda g, d: _replace_line(g, "CSeq", f"-1 {g.cseq[1]}"),
    "duplicate Call-ID": lambda g, d: _with_lines(g, [("Call-ID: ", "other@x")]),
    "duplicate CSeq": lambda g, d: _with_lines(g, [("CSeq: ", f"{g.cseq[0]} {g.cseq[1]}")]),
    "Content-Length beyond the body": lambda g, d: _replace_line(
        g, "Content-Length", str(len(g.body) + d(st.integers(1, 9)))
    ),
    "Content-Length negative": lambda g, d: _replace_line(g, "Content-Length", "-1"),
    "Content-Length not a number": lambda g, d: _replace_line(g, "Content-Length", "1x"),
    "malformed Via": lambda g, d: _replace_line(g, "Via", "SIP/2.0 host"),
    "malformed From": lambda g, d: _replace_line(g, "From", "<sip:a@b"),
}
REQUEST_MUTATIONS: dict[str, Any] = {
    "Max-Forwards negative": lambda g, d: _replace_line(g, "Max-Forwards", "-1"),
    "Max-Forwards not a number": lambda g, d: _replace_line(g, "Max-Forwards", "7O"),
    "Request-URI outside the grammar": lambda g, d: _start(g, f"{g.method} sip:a b@c SIP/2.0"),
    "Request-Line without version": lambda g, d: _start(g, f"{g.method} {g.uri.text}"),
    "method not a token": lambda g, d: _start(g, f"MES@AGE {g.uri.text} SIP/2.0"),
}


def _insert(gen: GenMessage, draw: Any, char: str) -> GenMessage:
    i = draw(st.integers(0, len(gen.lines) - 1))
    written, value = gen.lines[i]
    pos = draw(st.integers(0, len(value)))
    if char == "\r":  # never CR LF WSP: that would be a fold
        value = value[:pos] + char + value[pos:].lstrip("\n")
    else:
        value = value[:pos].rstrip("\r") + char + value[pos:]
    lines = list(gen.lines)
    lines[i] = (written, value)
    return GenMessage(gen.start, lines, gen.body, gen.method, gen.status, gen.reason)


def _with_lines(gen: GenMessage, extra: list[tuple[str, str]]) -> GenMessage:
    lines = [*gen.lines, *extra]
    return GenMessage(gen.start, lines, gen.body, gen.method, gen.status, gen.reason)


def _start(gen: GenMessage, start: str) -> GenMessage:
    return GenMessage(start, gen.lines, gen.body, gen.method, gen.status, gen.reason)


@MESSAGES
@given(
    messages(request=True), st.sampled_from(sorted({**MUTATIONS, **REQUEST_MUTATIONS})), st.data()
)
def test_request_breaking_one_rule_is_400(gen: GenMessage, rule: str, data: st.DataObject) -> None:
    broken = {**MUTATIONS, **REQUEST_MUTATIONS}[rule](gen, data.draw)
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(broken.wire())
    exc = info.value
    assert (exc.status, type(exc)) == (400, RemoteProtocolError), (rule, exc)
    # what an error response needs was read anyway (§8.2.6: copy Via, From, To, Call-ID)
    if "Request-Line" not in rule and "method" not in rule and "Request-URI" not in rule:
        assert exc.method == gen.method
    if exc.headers is not None and "Via" not in rule and " LF " not in rule and "CR" not in rule:
        assert exc.headers.get("Call-ID") is not None


@MESSAGES
@given(messages(request=False), st.sampled_from(sorted(MUTATIONS)), st.data())
def test_response_breaking_one_rule_is_dropped(
    gen: GenMessage, rule: str, data: st.DataObject
) -> None:
    broken = MUTATIONS[rule](gen, data.draw)
    with pytest.raises(DropMessage):  # a response is never answered (RFC 4475 §3.1.2.19)
        parse_message(broken.wire())


@settings(max_examples=30, deadline=None)
@given(messages(request=True), st.sampled_from(["SIP/3.0", "SIP/1.0", "SIP/2.1", "sip/2.0"]))
def test_other_sip_version_is_505(gen: GenMessage, version: str) -> None:
    assert gen.uri is not None
    broken = _start(gen, f"{gen.method} {gen.uri.text} {version}")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(broken.wire())
    assert info.value.status == 505  # §21.5.26, RFC 4475 §3.1.2.16


@settings(max_examples=30, deadline=None)
@given(
    messages(request=False),
    st.sampled_from(
        ["SIP/3.0 200 OK", "SIP/2.0 99 x", "SIP/2.0 700 x", "SIP/2.0 2000 x", "SIP/2.0 OK"]
    ),
)
def test_bad_status_line_is_dropped(gen: GenMessage, start: str) -> None:
    with pytest.raises(DropMessage):
        parse_message(_start(gen, start).wire())


@settings(max_examples=30, deadline=None)
@given(messages(request=True), tokens)
def test_cseq_method_mismatch(gen: GenMessage, other: str) -> None:
    """CSeq method != request method: 400, or 501 with Allow for a method we do not know
    (RFC 4475 §3.1.2.17-18)."""
    if other == gen.method:
        return
    broken = _replace_line(gen, "CSeq", f"{gen.cseq[0]} {other}")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(broken.wire(), allow=("MESSAGE", "OPTIONS"))
    if gen.method == "X-NEW":
        assert info.value.status == 501
        assert info.value.extra_headers == (("Allow", "MESSAGE, OPTIONS"),)
    else:
        assert info.value.status == 400
