"""Differential test: the sped-up parser against a frozen copy of the original (issue 11).

tests/unit/sip_oracle/ holds the parser, URI, header, message and serializer modules as
they were before the speed work. Both parse the same bytes: random well-formed messages
written in many legal spellings (compact and odd-case names, folding, lists, quoted
params, IPv6 hosts, missing or wrong Content-Length...), mutations of those, and mutated
RFC 4475 vectors. Every outcome must be identical: the message's repr, every typed view
(value or error), serialization, and for errors the type, text, status, fatal flag and
the headers and method attached for the error response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.parser_bench import MESSAGES
from gateway.sip.errors import RemoteProtocolError, SipError
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from tests.unit.sip_oracle.parser import parse_message as oracle_parse
from tests.unit.sip_oracle.serializer import serialize as oracle_serialize

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc4475"
SAMPLES = [
    (VECTORS / e["file"]).read_bytes()
    for e in json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))
]
SAMPLES += list(MESSAGES.values())

VIEWS = (
    "call_id",
    "cseq",
    "from_",
    "to",
    "from_tag",
    "to_tag",
    "vias",
    "top_via",
    "max_forwards",
    "content_length",
    "content_type",
    "contact_star",
    "contacts",
    "routes",
    "record_routes",
    "expires",
    "min_expires",
    "event",
    "subscription_state",
    "allow",
    "supported",
    "require",
    "proxy_require",
    "unsupported",
    "allow_events",
    "accept",
)
AUTH = ("WWW-Authenticate", "Proxy-Authenticate", "Authorization", "Proxy-Authorization")
LOOKUPS = ("via", "V", "From", "to", "CSEQ", "Call-ID", "i", "Content-Length", "X-Extra", "m")


def _error(exc: SipError) -> tuple[Any, ...]:
    if isinstance(exc, RemoteProtocolError):
        headers = None if exc.headers is None else tuple(exc.headers)
        return (
            type(exc).__name__,
            exc.message,
            exc.status,
            exc.reason,
            exc.extra_headers,
            exc.fatal,
            headers,
            exc.method,
        )
    return (type(exc).__name__, str(exc))


def _view(fn: Callable[[], object]) -> object:
    try:
        value = fn()
    except SipError as exc:
        return ("error", *_error(exc))
    return (repr(value), str(value))


def outcome(parse: Callable[[bytes], Any], ser: Callable[[Any], bytes], data: bytes) -> object:
    """Everything observable about parsing `data`, as plain comparable values."""
    try:
        m = parse(data)
    except SipError as exc:
        return ("error", *_error(exc))
    result: dict[str, object] = {"repr": repr(m), "serialized": _view(lambda: ser(m))}
    if hasattr(m, "uri"):
        result["uri"] = str(m.uri)
    for name in VIEWS:
        result[name] = _view(lambda name=name: getattr(m, name))
    for name in AUTH:
        result[name] = _view(lambda name=name: m.auth_headers(name))
    h = m.headers
    for name in LOOKUPS:
        result[f"h:{name}"] = (h.get(name), h.get_all(name), h.values(name), h.count(name))
        result[f"in:{name}"] = name in h
    return result


def assert_same(data: bytes) -> None:
    assert outcome(parse_message, serialize, data) == outcome(
        oracle_parse, oracle_serialize, data
    ), data


# ---------------------------------------------------------------- well-formed messages

tokens = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-.!%*_+`'~", min_size=1, max_size=10
)


def mostly(good: list[str], bad: list[str]) -> st.SearchStrategy[str]:
    """Usually one of `good`, one time in fifty one of `bad`."""
    return st.integers(0, 49).flatmap(lambda i: st.sampled_from(bad if i == 0 else good))


ws = st.sampled_from(["", "", "", " ", "  ", "\t", " \t"])
hosts = st.sampled_from(
    [
        *("example.com", "a.example.org.", "192.0.2.1", "[2001:db8::1]", "[::ffff:192.0.2.4]"),
        *("h-1", "xn--bcher-kva.example", "a--b", "1-2-3.x"),
    ]
)
ports = mostly(["", "", ":5060", ":0", ":65535", ":080"], [":65536", ":"])
users = mostly(["", "alice@", "bob%20b@", "u:pw@", "+1-555@", "a;b=c@"], ["x%zz@", "a b@"])
uri_params = st.lists(
    st.sampled_from([";lr", ";transport=udp", ";user=phone", ";maddr=192.0.2.9", ";x=%41", ";gr"]),
    max_size=3,
).map("".join)
uri_headers = mostly(["", "", "", "?subject=hi", "?a=b&c="], ["?bad"])


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP", "sIp"]))
    return f"{scheme}:{draw(users)}{draw(hosts)}{draw(ports)}{draw(uri_params)}{draw(uri_headers)}"


any_uris = sip_uris() | mostly(
    ["tel:+1-201-555-0123;phone-context=x", "mailto:a@b.c", "urn:x:y", "im:bob@x"], ["sip:", "tel:"]
)
header_params = st.lists(
    st.tuples(ws, tokens, mostly(["", "=v", '="q;,\\"x"', " = v", "=[::1]"], ["=a b", "="])),
    max_size=3,
).map(lambda ps: "".join(f"{w};{w}{n}{v}" for w, n, v in ps))


@st.composite
def name_addrs(draw: st.DrawFn) -> str:
    uri = draw(any_uris)
    display = draw(st.sampled_from(["", '"Alice" ', "Bob ", '"A \\"q\\"" ', "A B", '""']))
    tag = draw(mostly(["", ";tag=1928", ";TAG=x"], [";tag="]))
    if draw(st.booleans()) and not display:
        return f"{uri}{tag}{draw(header_params)}"  # addr-spec form
    return f"{display}{draw(ws)}<{uri}>{tag}{draw(header_params)}"


@st.composite
def vias(draw: st.DrawFn) -> str:
    def one() -> str:
        proto = draw(mostly(["SIP/2.0/UDP", "sip/2.0/tcp", "SIP / 2.0 / TLS"], ["SIP/2.0"]))
        branch = draw(st.sampled_from([";branch=z9hG4bK776", ";branch=z9hG4bK", "", ";branch"]))
        branch += draw(st.sampled_from(["", "", ";received=2001:db8::9", ";received=::1;rport=9"]))
        return f"{proto} {draw(hosts)}{draw(ports)}{branch}{draw(header_params)}"

    return ", ".join(one() for _ in range(draw(st.integers(1, 3))))


def values_for(name: str) -> st.SearchStrategy[str]:
    table: dict[str, st.SearchStrategy[str]] = {
        "Via": vias(),
        "From": name_addrs(),
        "To": name_addrs(),
        "Contact": st.lists(name_addrs(), min_size=1, max_size=2).map(", ".join) | st.just("*"),
        "Route": name_addrs(),
        "Record-Route": st.lists(name_addrs(), min_size=1, max_size=2).map(",".join),
        "Call-ID": tokens.map(lambda t: t + "@host"),
        "CSeq": st.tuples(
            mostly(["1", "0009", "4294967295"], ["4294967296", "x"]),
            mostly([" MESSAGE", " OPTIONS", "  NOTIFY ", " X-NEW"], ["MESSAGE"]),
        ).map("".join),
        "Max-Forwards": mostly(["70", "0", "255", "256", "007", "99999999999"], ["-1", "x"]),
        "Content-Type": mostly(
            ["text/plain", "text/plain;charset=UTF-8", "application/pidf+xml", "text / html"], ["x"]
        ),
        "Expires": st.sampled_from(["3600", "0", "4294967296", "abc", " 60 "]),
        "Event": mostly(["presence", "presence;id=1", "message-summary"], [".bad", "a..b"]),
        "Subscription-State": st.sampled_from(["active;expires=60", "terminated;reason=timeout"]),
        "Accept": mostly(["application/pidf+xml, */*;q=0.5", ""], ["bad"]),
        "Allow": mostly(["INVITE, ACK, MESSAGE", ""], ["a b"]),
        "Supported": st.sampled_from(["path, gruu", "", "100rel"]),
        "Authorization": st.sampled_from(
            ['Digest username="a", realm="r", nonce="n", uri="sip:x", response="0f"', "Bearer xyz="]
        ),
    }
    return table.get(
        name, st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20)
    )


NAMES = (
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Contact",
    "Route",
    "Record-Route",
    "Content-Type",
    "Expires",
    "Event",
    "Subscription-State",
    "Accept",
    "Allow",
    "Supported",
    "Authorization",
    "User-Agent",
    "X-Custom-Header",
)
REPEATABLE = ("Via", "Contact", "Route", "Record-Route", "Accept", "Allow", "Supported")
REPEATABLE += ("Authorization", "User-Agent", "X-Custom-Header")
COMPACT = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m", "Event": "o"}
COMPACT |= {"Content-Type": "c", "Supported": "k"}


@st.composite
def header_lines(draw: st.DrawFn) -> str:
    name = draw(mostly(list(REPEATABLE), list(NAMES)))
    spelling = draw(mostly(["canonical", "lower", "upper", "compact"], ["space"]))
    written = {
        "canonical": name,
        "lower": name.lower(),
        "upper": name.upper(),
        "compact": COMPACT.get(name, name),
        "space": name + " ",
    }[spelling]
    value = draw(values_for(name))
    if draw(st.integers(0, 9)) == 0 and " " in value:  # fold at a space (RFC 3261 §7.3.1)
        value = value.replace(" ", "\r\n ", 1)
    return f"{written}:{draw(ws)}{value}{draw(ws)}"


@st.composite
def wire_messages(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["MESSAGE", "NOTIFY", "SUBSCRIBE", "REGISTER", "FOO", "notify"]))
    if draw(st.booleans()):
        version = draw(mostly(["SIP/2.0"], ["sip/2.0", "SIP/3.0"]))
        start = f"{method} {draw(any_uris)} {version}"
    else:
        code = draw(mostly(["200", "100", "699", "404"], ["700", "99", "2000"]))
        start = f"SIP/2.0 {code}{draw(st.sampled_from([' OK', ' ', ' Très bien', '']))}"
    core = [
        f"Via: {draw(vias())}",
        f"From: {draw(name_addrs())}",
        f"To: {draw(name_addrs())}",
        "Call-ID: abc@host",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
    ]
    lines = [c for c in core if draw(st.integers(0, 29)) > 0]
    lines += draw(st.lists(header_lines(), max_size=6))
    lines = draw(st.permutations(lines))
    body = draw(st.binary(max_size=30))
    length = draw(mostly(["ok", "ok", "none", "short"], ["long", "twice", "bad"]))
    n = len(body)
    length_lines = {
        "ok": [f"Content-Length: {n}"],
        "none": [],
        "short": [f"l: {max(n - 1, 0)}"],
        "long": [f"Content-Length: {n + 5}"],
        "twice": [f"Content-Length: {n}", f"Content-Length: {n}"],
        "bad": ["Content-Length: -1"],
    }[length]
    lead = draw(st.sampled_from(["", "", "\r\n"]))
    head = "\r\n".join([start, *lines, *length_lines])
    return (lead + head + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


INSERTS = [b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b",", b'"', b"<", b">", b"%"]
INSERTS += [b"\x00", b"\xff", b"9" * 12, b"\r\n ", b"=", b"[", b"@"]


def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            buf[pos:pos] = draw(st.sampled_from(INSERTS))
        elif kind == "delete" and buf:
            del buf[pos : pos + draw(st.integers(1, 8))]
        else:
            del buf[pos:]
    return bytes(buf)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(SAMPLES) | wire_messages())
    return mutate(draw, base)


@pytest.mark.parametrize("data", SAMPLES, ids=range(len(SAMPLES)))
def test_vectors_same(data: bytes) -> None:
    assert_same(data)


@settings(max_examples=250, deadline=None)
@given(wire_messages())
def test_generated_messages_same(data: bytes) -> None:
    assert_same(data)


@settings(max_examples=250, deadline=None)
@given(mutated())
def test_mutated_messages_same(data: bytes) -> None:
    assert_same(data)


def test_oracle_sees_differences() -> None:
    """The comparison is not vacuous: different inputs give different outcomes."""
    a, b = MESSAGES["MESSAGE"], MESSAGES["SUBSCRIBE"]
    assert outcome(parse_message, serialize, a) != outcome(oracle_parse, oracle_serialize, b)
    bad = a.replace(b"CSeq: 1 MESSAGE", b"CSeq: x MESSAGE")
    assert outcome(parse_message, serialize, bad)[0] == "error"  # type: ignore[index]


# ---------------------------------------------------------------- the rules one by one

# The grammar's special characters, so random strings hit every branch of the regexes
# (the possessive forms of user, host, token and quoted-string among them).
RULE_CHARS = "sipSIPtelabc019.-_~*'()%2Fa:@;=?&[]+$,/<>\"\\ \t!`\x00\x0e\x7fé"


@st.composite
def near_valid(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A well-formed value with up to two characters inserted, deleted or replaced."""
    text = draw(base)
    for _ in range(draw(st.integers(0, 2))):
        pos = draw(st.integers(0, len(text)))
        ch = draw(st.sampled_from(RULE_CHARS))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            text = text[:pos] + ch + text[pos:]
        else:
            text = text[:pos] + (ch if op == "replace" else "") + text[pos + 1 :]
    return text


def _rule_outcome(fn: Callable[[str], object], text: str) -> object:
    try:
        return repr(fn(text))
    except SipError as exc:
        return _error(exc)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["sip:", "sips:", "SIP:", "tel:", "", "sip:a@", "sip:[::1]", "x:"]),
    st.text(RULE_CHARS, max_size=30) | near_valid(any_uris).map(lambda u: u.partition(":")[2]),
)
def test_uri_rule_same(prefix: str, rest: str) -> None:
    from gateway.sip.uri import parse_uri
    from tests.unit.sip_oracle.uri import parse_uri as oracle_uri

    text = prefix + rest
    assert _rule_outcome(parse_uri, text) == _rule_outcome(oracle_uri, text), text


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["SIP/2.0/UDP ", "SIP / 2.0 / TCP\t", "sip/2.0/tls host", ""]),
    st.text(RULE_CHARS, max_size=30) | near_valid(vias()).map(lambda v: v.partition(" ")[2]),
)
def test_via_rule_same(prefix: str, rest: str) -> None:
    from gateway.sip.headers import parse_via
    from tests.unit.sip_oracle.headers import parse_via as oracle_via

    text = prefix + rest
    assert _rule_outcome(parse_via, text) == _rule_outcome(oracle_via, text), text


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(['"A \\" b" <sip:a@b>', '"\\\x0e\\\x7f" <sip:a@b>', "<sip:x>", "sip:y@z", ""]),
    st.text(RULE_CHARS, max_size=30) | near_valid(name_addrs()),
)
def test_name_addr_rule_same(prefix: str, rest: str) -> None:
    from gateway.sip.headers import (
        parse_content_type,
        parse_event,
        parse_name_addr,
        parse_subscription_state,
    )
    from tests.unit.sip_oracle import headers as old

    for text in (prefix + rest, rest + prefix, prefix + ";" + rest):
        for new_fn, old_fn in (
            (parse_name_addr, old.parse_name_addr),
            (parse_content_type, old.parse_content_type),
            (parse_event, old.parse_event),
            (parse_subscription_state, old.parse_subscription_state),
        ):
            assert _rule_outcome(new_fn, text) == _rule_outcome(old_fn, text), text
