"""The benchmark harness itself (no timings asserted: speed belongs in bench/ output)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from bench import parser_bench
from bench.common import Row, cpu_seconds_of, dump_results, format_table, percentile, rss_bytes_of
from bench.run import SCENARIOS, main
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert math.isnan(percentile([], 50))


def test_table_has_every_row_and_dashes_for_missing() -> None:
    rows = [Row("s", "a", rate=1234.5, ratio=0.5), Row("s", "b", p99_ms=1.25, errors=2)]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("scenario")
    assert "1,234" in lines[2] and "0.50" in lines[2]
    assert "1.250" in lines[3] and lines[3].split()[-2] == "2" and lines[3].endswith("-")


def test_own_process_figures() -> None:
    assert rss_bytes_of(os.getpid()) > 1_000_000
    assert cpu_seconds_of(os.getpid()) > 0
    assert rss_bytes_of(2**22 + 12345) == 0  # no such process


def test_dump_results(tmp_path: Path) -> None:
    path = dump_results("x", [Row("x", "case", rate=2.0)], {"n": 1}, tmp_path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["rows"][0]["rate"] == 2.0 and doc["params"] == {"n": 1}
    assert doc["machine"]["nproc"] >= 1


def test_samples_are_typical_valid_messages() -> None:
    kinds = set()
    for name, data in parser_bench.MESSAGES.items():
        msg = parse_message(data)
        kinds.add(type(msg))
        assert serialize(msg) == data, name
        start, headers, body = parser_bench.bare_parse(data)
        assert start == data.split(b"\r\n")[0] and body == msg.body
        assert len(headers) == len(msg.headers)
        assert parser_bench.bare_serialize((start, headers, body)) == data
        if isinstance(msg, SipRequest):
            assert msg.cseq is not None and msg.cseq.method == msg.method == name
    assert kinds == {SipRequest, SipResponse}


def test_parser_scenario_runs_small() -> None:
    rows = parser_bench.run(n=20, repeat=1)
    names = [r.name for r in rows]
    assert "parse typical mix" in names and "bare split typical mix" in names
    assert all(r.errors == 0 and r.rate is not None and r.rate > 0 for r in rows)
    assert all(r.ratio is not None for r in rows if not r.name.startswith("bare"))


def test_runner_lists_and_rejects_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert "parser" in SCENARIOS
    assert main(["--list"]) == 0
    assert capsys.readouterr().out.startswith("parser ")
    with pytest.raises(SystemExit) as info:
        main(["no-such-scenario"])
    assert info.value.code == 2
