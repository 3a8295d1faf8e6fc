"""mappings.cpim: RFC 3862 message/cpim parse/build, escapes, namespaces, Require."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.cpim import (
    CPIM_NS,
    Address,
    CpimError,
    CpimHeader,
    CpimMessage,
    CpimUnsupported,
    build_cpim,
    check_require,
    escape,
    format_datetime,
    new_cpim,
    parse_cpim,
    parse_datetime,
    unescape,
)

RFC3862 = Path(__file__).resolve().parents[1] / "vectors" / "standards" / "rfc" / "rfc3862.txt"


def rfc3862_example(heading: str, tags: str) -> list[str]:
    """Lines of an RFC 3862 §5 example with the given ``m: s: h: e: x:`` tags kept."""
    text = RFC3862.read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n5.2.  " if heading.startswith("5.1") else "\n6.  ")]
    out = []
    for line in section.splitlines():
        m = re.match(r"      ([mshex]):(?: (.*))?$", line)
        if m and m.group(1) in tags:
            out.append(m.group(2) or "")
    return out


def crlf(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


SECTION_5_1 = "5.1.  An Example Message/CPIM Message\n"
SECTION_5_2 = "5.2.  An Example Esing MIME multipart/signed\n"

# --- RFC 3862 §5.1: the canonical example ---


@pytest.fixture
def canonical() -> bytes:
    lines = rfc3862_example(SECTION_5_1, "she")
    assert lines[0] == ""  # the s: line after the m: line
    return crlf(lines[1:]).removesuffix(b"\r\n")  # the body ends where the framing ends


def test_5_1_outer_mime_header() -> None:
    assert rfc3862_example(SECTION_5_1, "m") == ["Content-type: Message/CPIM"]


def test_5_1_parses(canonical: bytes) -> None:
    msg = parse_cpim(canonical, understood=None)
    assert msg.from_ == Address("im:piglet@100akerwood.com", "MR SANDERS")
    assert msg.to == [Address("im:eeyore@100akerwood.com", "Depressed Donkey")]
    assert msg.cc == []
    assert msg.datetime == datetime(2000, 12, 13, 13, 40, tzinfo=timezone(timedelta(hours=-8)))
    assert msg.subjects == [
        ("the weather will be fine today", None),
        ("beau temps prevu pour aujourd'hui", "fr"),
    ]
    assert msg.ns == {"MyFeatures": "mid:MessageFeatures@id.foo.com"}
    assert msg.require == (("mid:MessageFeatures@id.foo.com", "VitalMessageOption"),)
    vital = msg.get("VitalMessageOption", "mid:MessageFeatures@id.foo.com")
    assert vital is not None
    assert vital.text == "Confirmation-requested"
    assert msg.content_headers == (
        ("Content-type", "text/xml; charset=utf-8"),
        ("Content-ID", "<1234567890@foo.com>"),
    )
    assert msg.media_type == "text/xml"
    assert msg.content_header("content-id") == "<1234567890@foo.com>"
    assert msg.body == b"<body>\r\nHere is the text of my message.\r\n</body>"


def test_5_1_build_reproduces_every_octet(canonical: bytes) -> None:
    assert build_cpim(parse_cpim(canonical, understood=None)) == canonical


def test_5_1_require_of_unknown_header_is_an_error(canonical: bytes) -> None:
    """RFC 3862 §3.5 / RFC 3922 §4.2.7: Require names a header we do not implement."""
    with pytest.raises(CpimUnsupported) as info:
        parse_cpim(canonical)
    assert info.value.sip_status == 400
    assert info.value.xmpp_condition == "feature-not-implemented"
    assert "VitalMessageOption" in info.value.reason
    understood = {(CPIM_NS, "From"), ("mid:MessageFeatures@id.foo.com", "VitalMessageOption")}
    assert parse_cpim(canonical, understood=understood).require


def test_5_2_multipart_signed_wrapper_is_untouched() -> None:
    """RFC 3862 §5.2: the signed CPIM part parses; the outer bytes are never rebuilt."""
    inner = rfc3862_example(SECTION_5_2, "she")
    body = crlf(inner[1:])
    msg = parse_cpim(body, understood=None)
    assert msg.to == [Address("im:eeyore@100akerwood.com", "Dopey Donkey")]
    assert build_cpim(msg) == body
    wrapper = rfc3862_example(SECTION_5_2, "x")
    assert wrapper[0].startswith("Content-Type: multipart/signed; boundary=next;")
    assert "--next--" in wrapper


def test_encapsulated_multipart_signed_body_is_byte_identical() -> None:
    """RFC 3862 §9 / RFC 3923: a signed or encrypted inner part is opaque bytes."""
    inner = (
        b"--next\r\nContent-Type: text/plain\r\n\r\nhi\r\n--next\r\n"
        b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: binary\r\n"
        b"\r\n\x00\x01\xff\xfe\r\n\n\r--next--\r\n"
    )
    data = (
        b"From: <im:a@example.com>\r\nTo: <im:b@example.com>\r\n\r\n"
        b"Content-Type: multipart/signed; boundary=next;\r\n"
        b"        micalg=sha1; protocol=application/pkcs7-signature\r\n\r\n" + inner
    )
    msg = parse_cpim(data)
    assert msg.body == inner
    assert msg.media_type == "multipart/signed"
    assert msg.content_type == (
        "multipart/signed; boundary=next; micalg=sha1; protocol=application/pkcs7-signature"
    )
    assert build_cpim(msg).endswith(inner)
    enveloped = data.replace(b"multipart/signed; boundary=next;", b"application/pkcs7-mime;")
    assert parse_cpim(enveloped).body == inner


# --- §3.4 namespaces ---

_ACME = "http://id.acme.widgets/wily-headers/"


@pytest.mark.parametrize(
    "headers",
    [
        ["NS: acme <http://id.acme.widgets/wily-headers/>", "acme.runner-trap: set"],
        ["NS: widget <http://id.acme.widgets/wily-headers/>", "widget.runner-trap: set"],
        ["NS: <http://id.acme.widgets/wily-headers/>", "runner-trap: set"],
    ],
    ids=["acme", "widget", "default"],
)
def test_3_4_prefixes_for_the_same_uri_are_equivalent(headers: list[str]) -> None:
    msg = parse_cpim(crlf([*headers, "", "Content-Type: text/plain", ""]))
    (header,) = msg.get_all("runner-trap", _ACME)
    assert header.text == "set"
    assert msg.get("runner-trap") is None  # not in the CPIM namespace


def test_3_4_default_namespace_change_applies_to_later_headers_only() -> None:
    msg = parse_cpim(
        crlf(["From: <im:a@b>", "NS: <urn:x>", "From: <im:c@d>", "", "Content-Type: a/b", ""])
    )
    assert msg.from_ == Address("im:a@b")
    assert [(ns, local) for ns, local, _ in msg.resolved()] == [
        (CPIM_NS, "From"),
        (CPIM_NS, "NS"),
        ("urn:x", "From"),
    ]


def test_3_4_prefix_must_be_declared_before_use() -> None:
    data = crlf(["acme.x: 1", "NS: acme <urn:acme>", "", "Content-Type: a/b", ""])
    with pytest.raises(CpimError, match="before its NS"):
        parse_cpim(data)


@pytest.mark.parametrize("value", ["acme <urn:x#frag>", "acme urn:x", "a b <urn:x>", ""])
def test_malformed_ns_rejected(value: str) -> None:
    with pytest.raises(CpimError):
        parse_cpim(crlf([f"NS: {value}", "", "Content-Type: a/b", ""]))


def test_require_resolves_prefixes_and_accepts_imdn_headers() -> None:
    data = crlf(
        [
            "NS: i <urn:ietf:params:imdn>",
            "Require: i.Message-ID, From,Subject",
            "",
            "Content-Type: a/b",
            "",
        ]
    )
    msg = parse_cpim(data)
    assert msg.require == (
        ("urn:ietf:params:imdn", "Message-ID"),
        (CPIM_NS, "From"),
        (CPIM_NS, "Subject"),
    )
    with pytest.raises(CpimUnsupported):
        check_require(msg, understood={(CPIM_NS, "From")})


# --- §2.2 / §3.6 header syntax ---


def test_names_are_case_sensitive() -> None:
    """§2.2: "From:" and "from:" are different headers."""
    msg = parse_cpim(crlf(["from: <im:x@y>", "to: whatever", "", "Content-Type: a/b", ""]))
    assert msg.from_ is None
    assert msg.to == []
    assert [h.name for h in msg.headers] == ["from", "to"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("From:<im:a@b>", "no SP after colon"),
        (" From: <im:a@b>", "leading whitespace / folding"),
        ("\tSubject: x", "leading tab"),
        ("From : <im:a@b>", "space before colon"),
        ("Fr(om: x", "separator in name"),
        ("a.b.c: x", "two dots"),
        ("Subject: tab\there", "raw control character"),
        ("From:  <im:a@b>", "two spaces: value starts with SP"),
        ("From: <not a uri>", "bad URI"),
        ("From: Piglet", "no angle brackets"),
        ("To: <im:a@b> trailing", "junk after address"),
        ("DateTime: 2000-12-13 13:40:00", "not RFC 3339"),
        ("Subject:;lang fr x", "bad parameter"),
        ("Require: a..b", "bad header name in Require"),
        ("NoColonHere", "no colon"),
    ],
)
def test_malformed_headers_are_rejected(line: str, why: str) -> None:
    with pytest.raises(CpimError) as info:
        parse_cpim(crlf([line, "", "Content-Type: a/b", ""]))
    assert info.value.sip_status == 400, why


def test_non_utf8_header_rejected() -> None:
    with pytest.raises(CpimError, match="UTF-8"):
        parse_cpim(b"Subject: \xff\r\n\r\nContent-Type: a/b\r\n\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"From: <im:a@b>\r\n",  # no blank line
        b"\r\nContent-Type: a/b\r\n\r\n",  # no message headers
        b"From: <im:a@b>\r\n\r\nContent-ID: <x>\r\n\r\nbody",  # no Content-Type (§2.4)
        b"From: <im:a@b>\r\n\r\nbroken mime header\r\n\r\n",
    ],
)
def test_malformed_structure_rejected(data: bytes) -> None:
    with pytest.raises(CpimError):
        parse_cpim(data)


def test_bare_lf_tolerated_but_crlf_emitted() -> None:
    msg = parse_cpim(b"From: <im:a@b>\n\nContent-Type: text/plain\n\nhello\n")
    assert msg.from_ == Address("im:a@b")
    assert msg.body == b"hello\n"
    assert build_cpim(msg) == b"From: <im:a@b>\r\n\r\nContent-Type: text/plain\r\n\r\nhello\n"


def test_repeated_headers_and_order_preserved() -> None:
    lines = ["To: <im:a@b>", "X: 1", "To: Pooh Bear <im:c@d>", "X: 2", "cc: <im:e@f>"]
    msg = parse_cpim(crlf([*lines, "", "Content-Type: a/b", ""]))
    assert [h.line() for h in msg.headers] == lines
    assert msg.to == [Address("im:a@b"), Address("im:c@d", "Pooh Bear")]
    assert msg.cc == [Address("im:e@f")]


def test_quoted_formal_name_with_escapes() -> None:
    line = r'From: "Winnie \"the\" Pooh\\" <im:pooh@100akerwood.com>'
    msg = parse_cpim(crlf([line, "", "Content-Type: a/b", ""]))
    assert msg.from_ == Address("im:pooh@100akerwood.com", 'Winnie "the" Pooh\\')
    assert Address("im:pooh@100akerwood.com", 'Winnie "the" Pooh\\').render() == line[6:]


def test_subject_lang_and_ext_params() -> None:
    header = parse_cpim(
        crlf(['Subject:;lang=cz;x="a b;c" Ahoj!', "", "Content-Type: a/b", ""])
    ).headers[0]
    assert header.params == (("lang", "cz"), ("x", '"a b;c"'))
    assert (header.text, header.lang) == ("Ahoj!", "cz")


# --- §2.3 escapes ---


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (r"a\\b", "a\\b"),
        (r"say \"hi\"", 'say "hi"'),
        (r"it\'s", "it's"),
        (r"\b\t\n\r", "\b\t\n\r"),
        (r"\u0007bell", "\x07bell"),
        (r"\u00e9", "é"),
        (r"\x", "x"),  # unknown escape: the next char
        ("trailing\\", "trailing"),  # isolated trailing backslash ignored
        (r"\u12", "u12"),  # not four hex digits: unknown escape
    ],
)
def test_unescape(raw: str, text: str) -> None:
    assert unescape(raw) == text


def test_escape_uses_specials_then_uxxxx() -> None:
    assert escape("a\\b\b\t\n\r") == r"a\\b\b\t\n\r"
    assert escape("\x00\x1f\x7f") == r"\u0000\u001f\u007f"
    assert escape("\"'") == "\"'"  # quotes only escaped inside matching quotes
    assert escape("\"'", quote='"') == "\\\"'"
    assert escape("é\u2028") == "é\u2028"  # other characters MUST NOT be escaped


def test_header_make_escapes_controls() -> None:
    header = CpimHeader.make("Subject", "two\nlines", lang="en")
    assert header.line() == r"Subject:;lang=en two\nlines"
    assert header.text == "two\nlines"


# --- DateTime (§4.4) / RFC 3339 ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2001-02-01T12:16:49-05:00", datetime(2001, 2, 1, 17, 16, 49, tzinfo=UTC)),
        ("2001-02-01T12:16:49Z", datetime(2001, 2, 1, 12, 16, 49, tzinfo=UTC)),
        ("2001-02-01t12:16:49.5z", datetime(2001, 2, 1, 12, 16, 49, 500000, tzinfo=UTC)),
        ("1990-12-31T23:59:60Z", datetime(1990, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_rfc3339(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2001-02-01", "2001-02-01T12:16:49", "2001-02-01T12:16:49+5:00", "2001-13-01T00:00:00Z"],
)
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_format_datetime() -> None:
    assert format_datetime(
        datetime(2000, 12, 13, 13, 40, tzinfo=timezone(-timedelta(hours=8)))
    ) == ("2000-12-13T13:40:00-08:00")
    assert format_datetime(datetime(2000, 1, 1, tzinfo=UTC)) == "2000-01-01T00:00:00Z"
    assert format_datetime(datetime(999, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == (
        "0999-01-02T03:04:05.000007Z"
    )
    with pytest.raises(ValueError):
        format_datetime(datetime(2000, 1, 1))


# --- building ---


def test_new_cpim_builds_rfc3922_style_message() -> None:
    """RFC 3922 §4: text/plain; charset=utf-8, Subject with lang."""
    msg = new_cpim(
        from_=Address("im:juliet@example.com"),
        to=[Address("im:romeo@example.net", "Romeo")],
        content_type="text/plain; charset=utf-8",
        body=b"Ahoj!",
        sent=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        subjects=[("Pozdrav", "cz")],
    )
    assert build_cpim(msg) == (
        b"From: <im:juliet@example.com>\r\n"
        b"To: Romeo <im:romeo@example.net>\r\n"
        b"DateTime: 2024-01-02T03:04:05Z\r\n"
        b"Subject:;lang=cz Pozdrav\r\n"
        b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Ahoj!"
    )


def test_constructing_invalid_messages_fails() -> None:
    with pytest.raises(CpimError):
        CpimHeader("Bad Name", "x")
    with pytest.raises(CpimError):
        CpimHeader("Subject", "raw\ttab")
    with pytest.raises(CpimError):
        CpimMessage((CpimHeader("From", "nope"),), (("Content-Type", "a/b"),))
    with pytest.raises(CpimError):
        CpimMessage((CpimHeader("From", "<im:a@b>"),), ())


# --- property: build -> parse round trip ---

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff"),
    max_size=30,
)
_display = st.one_of(st.none(), _text.filter(bool))
_uri = st.from_regex(r"(im|sip|pres):[a-z0-9]{1,8}@[a-z]{1,8}\.example", fullmatch=True)
_address = st.builds(Address, _uri, _display)


@st.composite
def _messages(draw: st.DrawFn) -> CpimMessage:
    sent = draw(
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(1971, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
            ),
        )
    )
    extra = [
        CpimHeader("NS", "x <urn:example:x>"),
        *(CpimHeader.make("x.Note", t) for t in draw(st.lists(_text, max_size=2))),
    ]
    return new_cpim(
        from_=draw(_address),
        to=draw(st.lists(_address, min_size=1, max_size=3)),
        content_type=draw(st.sampled_from(["text/plain; charset=utf-8", "message/imdn+xml"])),
        body=draw(st.binary(max_size=64)),
        sent=sent,
        subjects=draw(st.lists(st.tuples(_text, st.sampled_from([None, "en", "fr"])), max_size=2)),
        extra=extra,
    )


@settings(max_examples=200, deadline=None)
@given(_messages())
def test_round_trip_property(msg: CpimMessage) -> None:
    wire = build_cpim(msg)
    back = parse_cpim(wire)
    assert back == msg
    assert build_cpim(back) == wire
    assert back.datetime == msg.datetime
    assert back.subjects == msg.subjects
    assert back.from_ == msg.from_
