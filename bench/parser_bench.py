"""SIP parser microbenchmark (issue 11): typical messages parsed and serialized N times on
one core, against a bare baseline measured in the same run.

The bare baseline is the floor any parser pays: split the datagram into start line, header
lines and body with `bytes.partition`/`split` and build a dict. `vs bare` = parser rate /
baseline rate for the same message. Rates are computed from this process's CPU time (one
thread, so one core), which is steadier than wall time on a shared machine; wall-clock
rates are kept in the JSON results.

    python -m bench.parser_bench [-n 20000] [--repeat 5] [--cpu 1] [--no-json]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import Row, dump_results, percentile, print_table, self_sample

__all__ = ["MESSAGES", "bare_parse", "bare_serialize", "main", "run", "summarize"]

SCENARIO = "parser"
TARGET_RATE = 50_000  # typical requests/s on one core (issue 11)

_PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
    b'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:bob@example.org">\r\n'
    b' <tuple id="t8a1f3c"><status><basic>open</basic></status>'
    b'<contact priority="0.8">sip:bob@192.0.2.20:5060</contact></tuple>\r\n'
    b' <dm:person id="p1"><rpid:activities><rpid:busy/></rpid:activities>'
    b"<dm:note>In a meeting</dm:note></dm:person>\r\n"
    b"</presence>\r\n"
)


def _msg(start: str, headers: Sequence[str], body: bytes = b"") -> bytes:
    head = "\r\n".join([start, *headers, f"Content-Length: {len(body)}", "", ""])
    return head.encode() + body


# Typical traffic as sent by common user agents (baresip, Linphone, Jitsi) and by the gateway.
MESSAGES: dict[str, bytes] = {
    "MESSAGE": _msg(
        "MESSAGE sip:bob@example.org SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport",
            "Max-Forwards: 70",
            'From: "Alice" <sip:alice@example.com>;tag=49583',
            "To: <sip:bob@example.org>",
            "Call-ID: a84b4c76e66710@192.0.2.10",
            "CSeq: 1 MESSAGE",
            "User-Agent: baresip v3.10.1 (x86_64/linux)",
            "Content-Type: text/plain;charset=UTF-8",
        ],
        b"Hello Bob, are you coming to the meeting at 3?",
    ),
    "SUBSCRIBE": _msg(
        "SUBSCRIBE sip:bob@example.org SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport",
            "Max-Forwards: 70",
            "From: <sip:alice@example.com>;tag=1928301774",
            "To: <sip:bob@example.org>",
            "Call-ID: 3848276298220188511@192.0.2.10",
            "CSeq: 2 SUBSCRIBE",
            "Contact: <sip:alice@192.0.2.10:5060;transport=udp>",
            "Event: presence",
            "Accept: application/pidf+xml",
            "Expires: 3600",
            "Allow-Events: presence",
            "User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)",
        ],
    ),
    "NOTIFY": _msg(
        "NOTIFY sip:alice@192.0.2.10:5060;transport=udp SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.5:5060;branch=z9hG4bK.Qq8pX2mZ",
            "Max-Forwards: 70",
            "From: <sip:bob@example.org>;tag=6aa1c0f3",
            "To: <sip:alice@example.com>;tag=1928301774",
            "Call-ID: 3848276298220188511@192.0.2.10",
            "CSeq: 7 NOTIFY",
            "Contact: <sip:gw@198.51.100.5:5060>",
            "Event: presence",
            "Subscription-State: active;expires=3599",
            "Content-Type: application/pidf+xml",
        ],
        _PIDF,
    ),
    "REGISTER": _msg(
        "REGISTER sip:example.com SIP/2.0",
        [
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport",
            "Max-Forwards: 70",
            "From: <sip:alice@example.com>;tag=a73kszlfl",
            "To: <sip:alice@example.com>",
            "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10",
            "CSeq: 1 REGISTER",
            'Contact: <sip:alice@192.0.2.10:5060>;expires=3600;+sip.instance="<urn:uuid:'
            '00000000-0000-1000-8000-000A95A0E128>"',
            "Expires: 3600",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY",
            "Supported: path, gruu, outbound",
            "User-Agent: baresip v3.10.1 (x86_64/linux)",
        ],
    ),
    "200 OK": _msg(
        "SIP/2.0 200 OK",
        [
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;"
            "received=192.0.2.10",
            'From: "Alice" <sip:alice@example.com>;tag=49583',
            "To: <sip:bob@example.org>;tag=a6c85cf",
            "Call-ID: a84b4c76e66710@192.0.2.10",
            "CSeq: 1 MESSAGE",
            "Server: cpim-gateway",
        ],
    ),
}


def bare_parse(data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The floor: start line, a dict of header lines, the body. No validation at all."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip()] = value.strip()
    return lines[0], headers, body


def bare_serialize(parsed: tuple[bytes, dict[bytes, bytes], bytes]) -> bytes:
    """The floor for output: join the start line, header lines and body."""
    start, headers, body = parsed
    lines = [start, *(n + b": " + v for n, v in headers.items()), b"", b""]
    return b"\r\n".join(lines) + body


def _rate(
    fn: Callable[[Any], object], inputs: Sequence[Any], n: int, repeat: int
) -> dict[str, float]:
    """Call fn over `inputs` round-robin, n calls per repeat; CPU-time and wall rates."""
    k = len(inputs)
    todo = [inputs[i % k] for i in range(n)]
    cpu_rates: list[float] = []
    wall_rates: list[float] = []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        for item in todo:
            fn(item)
        c1, w1 = time.process_time(), time.perf_counter()
        cpu_rates.append(n / max(c1 - c0, 1e-9))
        wall_rates.append(n / max(w1 - w0, 1e-9))
    return {
        "rate": statistics.median(cpu_rates),
        "best": max(cpu_rates),
        "wall": statistics.median(wall_rates),
    }


def _latencies(fn: Callable[[Any], object], inputs: Sequence[Any], n: int) -> list[float]:
    """Per-call wall latency in ms (includes the timer's own cost, ~0.1 us)."""
    clock = time.perf_counter_ns
    out: list[float] = []
    k = len(inputs)
    for i in range(n):
        item = inputs[i % k]
        t0 = clock()
        fn(item)
        out.append((clock() - t0) / 1e6)
    return out


def _row(
    name: str,
    fn: Callable[[Any], object],
    inputs: Sequence[Any],
    n: int,
    repeat: int,
    *,
    baseline: float | None = None,
) -> Row:
    r = _rate(fn, inputs, n, repeat)
    lat = _latencies(fn, inputs, min(n, 20_000))
    return Row(
        scenario=SCENARIO,
        name=name,
        rate=r["rate"],
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        max_ms=max(lat),
        cpu_per_1k=1000 / r["rate"],
        rss_mb=self_sample().rss / 2**20,
        ratio=None if baseline is None else r["rate"] / baseline,
        extra={"best_rate": r["best"], "wall_rate": r["wall"], "calls": n, "repeat": repeat},
    )


def run(n: int = 20_000, repeat: int = 5) -> list[Row]:
    """Measure bare baseline, parse, serialize and parse+serialize for each message and
    for the round-robin mix of all of them ('typical')."""
    from gateway.sip.errors import SipError
    from gateway.sip.parser import parse_message
    from gateway.sip.serializer import serialize

    cases: list[tuple[str, list[bytes]]] = [(k, [v]) for k, v in MESSAGES.items()]
    cases.append(("typical mix", list(MESSAGES.values())))
    errors = 0
    for data in MESSAGES.values():  # every sample must parse and round-trip
        try:
            if serialize(parse_message(data)) != data:
                errors += 1
        except SipError:
            errors += 1

    rows: list[Row] = []
    for name, inputs in cases:
        bare = _row(f"bare split {name}", bare_parse, inputs, n, repeat)
        parsed = [parse_message(d) for d in inputs]
        rows.append(bare)
        rows.append(_row(f"parse {name}", parse_message, inputs, n, repeat, baseline=bare.rate))
        bare_parsed = [bare_parse(d) for d in inputs]
        bare_ser = _row(f"bare join {name}", bare_serialize, bare_parsed, n, repeat)
        rows.append(bare_ser)
        rows.append(_row(f"serialize {name}", serialize, parsed, n, repeat, baseline=bare_ser.rate))
    mix = list(MESSAGES.values())
    bare_rt = _row(
        "bare split+join typical mix", lambda d: bare_serialize(bare_parse(d)), mix, n, repeat
    )
    rows.append(bare_rt)
    rows.append(
        _row(
            "parse+serialize typical mix",
            lambda d: serialize(parse_message(d)),
            mix,
            n,
            repeat,
            baseline=bare_rt.rate,
        )
    )
    for row in rows:
        row.errors = errors
    return rows


def summarize(rows: Sequence[Row]) -> str:
    """One line: the typical-mix parse rate against the issue 11 target."""
    typical = next(r for r in rows if r.name == "parse typical mix")
    rate, ratio = typical.rate or 0.0, typical.ratio or 0.0
    verdict = "meets" if rate >= TARGET_RATE else "MISSES"
    return (
        f"parser, typical mix: {rate:,.0f} messages/s on one core (CPU time); "
        f"{verdict} the {TARGET_RATE:,}/s target; {ratio:.2f} of the bare split"
    )


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.parser_bench", description=__doc__)
    ap.add_argument("-n", type=int, default=20_000, help="calls per repeat (default 20000)")
    ap.add_argument("--repeat", type=int, default=5, help="repeats; the median is reported")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: no pin)")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    args = ap.parse_args(argv)
    _pin(args.cpu)
    gc.collect()
    rows = run(args.n, args.repeat)
    print_table(rows)
    print("\n" + summarize(rows))
    if not args.no_json:
        path = dump_results(SCENARIO, rows, {"n": args.n, "repeat": args.repeat, "cpu": args.cpu})
        print(f"results: {path}")
    return 1 if rows[0].errors else 0


if __name__ == "__main__":
    sys.exit(main())
