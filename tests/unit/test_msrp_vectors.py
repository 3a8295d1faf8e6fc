"""The RFC 4975 example messages (tests/vectors/msrp, see its README) through the core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.msrp import reports
from gateway.msrp.chunks import Complete, Reassembler
from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.framing import Frame, MsrpFramer
from gateway.msrp.message import ByteRange, MsrpRequest, MsrpResponse
from gateway.msrp.parser import parse_message
from gateway.msrp.serializer import serialize

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "msrp"
EXPECT = json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))


def _vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def test_every_vector_has_an_expectation() -> None:
    assert {e["file"] for e in EXPECT} == {p.name for p in VECTORS.glob("*.msrp")}
    assert len(EXPECT) == 12


@pytest.mark.parametrize("entry", EXPECT, ids=lambda e: e["file"])
def test_vector(entry: dict[str, object]) -> None:
    data = _vector(str(entry["file"]))
    assert data.endswith((b"$\r\n", b"+\r\n"))
    if "error" in entry:
        with pytest.raises(RemoteProtocolError) as info:
            parse_message(data)
        assert info.value.status == entry["error"] and not info.value.fatal
        return
    msg = parse_message(data)
    assert serialize(msg) == data  # byte-exact round trip
    if "code" in entry:
        assert isinstance(msg, MsrpResponse) and msg.code == entry["code"]
        return
    assert isinstance(msg, MsrpRequest) and msg.method == entry["method"]
    assert str(msg.byte_range) == entry["byte_range"]
    assert msg.flag == entry.get("flag", "$")
    if "body_length" in entry:
        assert msg.body is not None and len(msg.body) == entry["body_length"]
    else:
        assert msg.body is None


def test_vectors_through_the_framer_in_one_stream_and_byte_by_byte() -> None:
    names = [str(e["file"]) for e in EXPECT]
    stream = b"".join(_vector(n) for n in names)
    whole = MsrpFramer().feed(stream, 0.0)
    assert [f.data for f in whole if isinstance(f, Frame)] == [_vector(n) for n in names]
    framer = MsrpFramer()
    bytewise = [e for i in range(len(stream)) for e in framer.feed(stream[i : i + 1], 0.0)]
    assert bytewise == whole and framer.buffered == 0 and framer.deadline is None


def test_s11_4_chunks_reassemble_with_the_dollar_chunk_defining_the_total() -> None:
    first = parse_message(_vector("s11_4_chunk1.msrp"))
    last = parse_message(_vector("s11_4_chunk2.msrp"))
    assert isinstance(first, MsrpRequest) and isinstance(last, MsrpRequest)
    for order in ((first, last), (last, first)):  # §7.3.1: no delivery order assumed
        r = Reassembler()
        assert r.receive(order[0], 0.0) is None and len(r) == 1
        done = r.receive(order[1], 1.0)
        assert isinstance(done, Complete) and len(r) == 0
        assert done.body == (first.body or b"") + (last.body or b"")
        assert len(done.body) == 147  # not the declared 148: the payload decides (§7.3.1)
        assert done.body.endswith(b"ABCD1234567890") and done.content_type == "message/cpim"


def test_s11_1_response_is_rebuilt_exactly() -> None:
    send = parse_message(_vector("s11_1_send_alice.msrp"))
    assert isinstance(send, MsrpRequest)
    answer = reports.response(send, 200)
    assert answer is not None and serialize(answer) == _vector("s11_1_200_bob.msrp")
    send = parse_message(_vector("s11_1_send_bob.msrp"))
    assert isinstance(send, MsrpRequest)
    answer = reports.response(send, 200)
    assert answer is not None and serialize(answer) == _vector("s11_1_200_alice.msrp")


def test_s11_6_success_report_is_rebuilt_exactly() -> None:
    send = parse_message(_vector("s11_6_send.msrp"))
    assert isinstance(send, MsrpRequest)
    assert reports.success_report_due(send) and not reports.failure_report_allowed(send)
    assert reports.response(send, 200) is None  # Failure-Report: no (§7.1.4)
    report = reports.success_report(send, ByteRange(1, 106, 106), new_id=lambda: "dkei38sd")
    assert serialize(report) == _vector("s11_6_report.msrp")


def test_s11_5_system_message_gets_no_response_and_no_report() -> None:
    send = parse_message(_vector("s11_5_system.msrp"))
    assert isinstance(send, MsrpRequest)
    assert not reports.success_report_due(send)
    assert reports.response(send, 200) is None and reports.response(send, 400) is None
    assert reports.failure_report(send, 415) is None
