"""Stream framing (RFC 3261 §18.3) and keep-alives (RFC 5626 §3.5.1)."""

from __future__ import annotations

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.framing import Frame, KeepAlivePing, KeepAlivePong, StreamFramer

MSG = (
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    events = [e for i in range(len(MSG) * 2) for e in framer.feed((MSG * 2)[i : i + 1])]
    assert events == [Frame(MSG), Frame(MSG)] and framer.buffered == 0


def test_keepalives_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n" + MSG + b"\r\n" + MSG[:10]) == [
        KeepAlivePing(),
        Frame(MSG),
        KeepAlivePong(),
    ]
    assert framer.feed(MSG[10:]) == [Frame(MSG)]
    assert (
        framer.feed(b"\r") == []
        and framer.feed(b"\n\r") == []
        and framer.feed(b"\n") == [KeepAlivePing()]
    )


def test_compact_and_folded_content_length() -> None:
    framer = StreamFramer()
    m = MSG.replace(b"Content-Length: 4", b"l :\r\n  4")
    assert framer.feed(m) == [Frame(m)]


@pytest.mark.parametrize(
    "bad",
    [
        MSG.replace(b"Content-Length: 4\r\n", b""),  # mandatory on streams
        MSG.replace(b"Content-Length: 4", b"Content-Length: -4"),
        MSG.replace(b"Content-Length: 4", b"Content-Length: four"),
        MSG.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"),
        MSG.replace(b"Content-Length: 4", b"Content-Length: " + b"9" * 50),
    ],
)
def test_fatal_framing_errors(bad: bytes) -> None:
    framer = StreamFramer()
    with pytest.raises(RemoteProtocolError) as info:
        framer.feed(bad)
    assert info.value.fatal
    with pytest.raises(RemoteProtocolError):  # the connection is done
        framer.feed(MSG)


def test_bounded_buffer() -> None:
    framer = StreamFramer(max_message_size=1024)
    with pytest.raises(RemoteProtocolError) as info:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 2000)
    assert info.value.status == 513 and info.value.fatal
    framer = StreamFramer(max_message_size=1024)
    with pytest.raises(RemoteProtocolError):
        framer.feed(MSG.replace(b"Content-Length: 4", b"Content-Length: 5000"))


def test_complete_message_before_a_framing_error_is_not_lost() -> None:
    """RFC 4475 §3.1.1.8 (dblreq) over a stream: the REGISTER is framed; the junk after
    it (no Content-Length, §18.3) is an error left for the caller, who closes."""
    good = b"REGISTER sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    junk = b"INVITE sip:b SIP/2.0\r\nVia: x\r\n\r\n"
    framer = StreamFramer()
    events = framer.feed(good + junk)
    assert events == [Frame(good)]
    assert framer.error is not None and framer.error.fatal
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"more")
