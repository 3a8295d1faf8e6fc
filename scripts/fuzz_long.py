#!/usr/bin/env python3
"""The recorded long fuzz run of issue 12 (figures in docs/reliability.md).

    .venv/bin/python scripts/fuzz_long.py [--sip 1000000] [--xml 100000] [--workers 2]

SIP inputs (RFC 4475 vectors and generated messages, mutated) go through parse_message,
validate_request / validate_response, error_response, serialize -> parse (accepted
requests must round-trip) and a StreamFramer fed in random chunks. XML bodies (PIDF/RPID,
isComposing, IMDN: seeds, random trees, hostile documents, all mutated) go through their
parsers and the consumers of a parsed document; on top, message/cpim bodies and XEP-0106
localparts are counted separately.

Every input is a pure function of (seed, kind, worker, index), so any finding is replayed
with `--replay KIND:WORKER:INDEX`. Per input: a watchdog (`signal.setitimer`) raises on
overrun of `--bound` seconds; the parent also kills a worker whose progress counter stops
(a hang in C code that no signal interrupts). RSS is sampled every `--sample` inputs.
Exit status 1 on any unhandled exception, overrun, hang or RSS growth beyond `--rss-mb`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.sip.errors import DropMessage, RemoteProtocolError  # noqa: E402
from gateway.sip.framing import Frame, StreamFramer  # noqa: E402
from gateway.sip.message import SipMessage, SipRequest, SipResponse  # noqa: E402
from gateway.sip.parser import parse_message  # noqa: E402
from gateway.sip.serializer import serialize  # noqa: E402
from gateway.sip.validate import (  # noqa: E402
    GATEWAY_POLICY,
    error_response,
    validate_request,
    validate_response,
)
from mappings import cpim, imdn, iscomposing, pidf, presence  # noqa: E402
from mappings.jid import JidError, escape_local, parse_jid, unescape_local  # noqa: E402
from mappings.xmlsafe import FormatError  # noqa: E402
from tests.unit import test_fuzz_formats as fmt_corpus  # noqa: E402
from tests.unit import test_fuzz_sip as sip_corpus  # noqa: E402

KINDS = ("sip", "xml", "cpim", "jid")


class Overrun(Exception):
    """The watchdog fired: one input took longer than the bound."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Overrun


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- SIP inputs ------------------------------------------------------------------------------

METHODS = sip_corpus.METHODS
HOSTS = ["a.example.com", "127.0.0.1", "[::1]", "[2001:db8::1]", "h", "x-y.z", "192.0.2.7"]
URIS = ["sip:{u}@{h}", "sips:{u}@{h}:5061", "sip:{h};transport=tcp;lr", "tel:+1-555",
        "sip:{u}@{h}?Subject=x", "im:{u}@{h}", "pres:{u}@{h}",
        "sip:%61{u}@{h};maddr=1.2.3.4"]  # fmt: skip


def _uri(rng: random.Random) -> str:
    return rng.choice(URIS).format(u=rng.choice(["bob", "a.b", "+1", "x%20y", "é"]),
                                   h=rng.choice(HOSTS))  # fmt: skip


DISPLAY = ["", '"A b" ', "Bob ", '"q \\" x" ']


def generated_sip(rng: random.Random) -> bytes:
    method = rng.choice(METHODS)
    body = rng.randbytes(rng.choice([0, 0, 4, 40, 300]))
    headers = [
        ("Via", f"SIP/2.0/{rng.choice(['UDP', 'TCP', 'TLS'])} {rng.choice(HOSTS)}"
                f";branch=z9hG4bK{rng.randrange(10**9)}" + rng.choice(["", ";rport"])),
        ("From", f"{rng.choice(DISPLAY)}<{_uri(rng)}>;tag={rng.randrange(999)}"),
        ("To", f"<{_uri(rng)}>"),
        ("Call-ID", f"{rng.randrange(10**12)}@{rng.choice(HOSTS)}"),
        ("CSeq", f"{rng.randrange(2**32)} {method if rng.random() < 0.95 else 'BYE'}"),
        ("Max-Forwards", str(rng.randrange(100))),
    ]  # fmt: skip
    optional = [
        ("Contact", rng.choice(["*", f"<{_uri(rng)}>;expires=60", f"<{_uri(rng)}>, <sip:c@d>"])),
        ("Route", "<sip:p1@h;lr>, <sip:p2@h;lr>"),
        (
            "Content-Type",
            rng.choice(["text/plain", "message/cpim", "application/pidf+xml", "application/x-foo"]),
        ),
        ("Accept", rng.choice(["application/pidf+xml", "*/*"])),
        ("Require", rng.choice(["gruu", "100rel"])),
        ("Event", rng.choice(["presence", "presence;id=7"])),
        ("Expires", str(rng.randrange(2**33))),
        ("Supported", "path, gruu"),
    ]
    headers += rng.sample(optional, rng.randrange(len(optional)))
    if rng.random() < 0.8:
        headers.append(("Content-Length", str(len(body))))
    rng.shuffle(headers)
    start = f"{method} {_uri(rng)} SIP/2.0"
    if rng.random() < 0.25:
        start = f"SIP/2.0 {rng.randrange(100, 700)} {rng.choice(['OK', '', 'Not Found'])}"
    sep = rng.choice([": ", ":", " :  ", ":\r\n "])
    lines = [start, *(f"{n}{sep}{v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def mutate(rng: random.Random, data: bytes, tokens: list[bytes], values: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(min(6, 1 + int(rng.expovariate(1.0)))):  # mostly one or two edits
        op = rng.randrange(8)
        i = rng.randrange(len(buf) + 1)
        if op == 0 and i < len(buf):
            buf[i] = rng.randrange(256) if rng.random() < 0.5 else rng.randrange(0x20, 0x7F)
        elif op == 1:
            del buf[i : i + rng.randint(1, 32)]
        elif op == 2:
            buf[i:i] = buf[i : i + rng.randint(1, 64)]  # duplicate a slice
        elif op == 3:
            buf[i:i] = rng.choice(tokens)
        elif op == 4:
            del buf[i:]
        elif op == 5:  # replace a line's value with a hostile one
            colon = buf.find(b":", i)
            end = buf.find(b"\n", colon)
            if 0 <= colon < end:
                buf[colon + 1 : end] = rng.choice(values) + b"\r"
        elif op == 6:  # repeat a token many times (superlinear parsing shows up here)
            buf[i:i] = rng.choice(tokens) * rng.choice([10, 100, 1000])
        else:
            start = buf.rfind(b"\n", 0, i) + 1
            end = buf.find(b"\n", i)
            if end > start:
                buf[start:start] = buf[start : end + 1] * rng.randint(1, 20)
    return bytes(buf)


SIP_TOKENS = sip_corpus.TOKENS
SIP_VALUES = [v.encode("utf-8", "surrogatepass") for v in sip_corpus.HOSTILE_VALUES]


def sip_input(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.4:
        base = rng.choice(sip_corpus.SAMPLES)
    elif r < 0.95:
        base = generated_sip(rng)
    else:
        return rng.randbytes(rng.randrange(400))
    return mutate(rng, base, SIP_TOKENS, SIP_VALUES) if rng.random() < 0.9 else base


def _key(m: SipMessage) -> tuple[object, ...]:
    start = (m.method, m.uri) if isinstance(m, SipRequest) else (m.status, m.reason)
    return (type(m), start, [(n, v) for n, v in m.headers if n != "Content-Length"], m.body)


class Finding(Exception):
    """A property broken without an exception of its own (e.g. no round trip)."""


def run_sip(data: bytes, rng: random.Random) -> None:
    _datagram(data)
    framer = StreamFramer(rng.choice([1024, 4096, 65535]))
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 512)
        try:
            events = framer.feed(data[pos : pos + size])
        except RemoteProtocolError as exc:
            if not exc.fatal:
                raise Finding("non-fatal framing error") from exc
            return
        for event in events:
            if isinstance(event, Frame):
                _datagram(event.data)
        if framer.error is not None:
            return
        pos += size


def _datagram(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except DropMessage:
        return
    except RemoteProtocolError as exc:
        answer = error_response(exc)
        if answer is not None:
            serialize(answer)
        return
    if isinstance(msg, SipResponse):
        with contextlib.suppress(DropMessage):
            validate_response(msg)
        return
    try:
        validate_request(msg, GATEWAY_POLICY, size=len(data))
    except RemoteProtocolError as exc:
        answer = error_response(exc)
        if answer is not None:
            serialize(answer)
        return
    if _key(parse_message(serialize(msg))) != _key(msg):
        raise Finding("accepted request does not round-trip")


# -- XML, CPIM and XEP-0106 inputs ------------------------------------------------------------

XML_TOKENS = [*fmt_corpus.HOSTILE_FRAGMENTS, b"<x>", b"</x>", b"&amp;", b"&#65;"]
XML_VALUES = [b"", b"open", b"9" * 30, b"<", b"&", b"2024-13-40T25:61:61Z", b'"x"']
FORMATS: list[tuple[str, str, str, bytes, Callable[[bytes], object]]] = [
    ("pidf", fmt_corpus.PIDF_NS, "presence", fmt_corpus.SEED_PIDF, pidf.parse_pidf),
    ("isc", fmt_corpus.ISC_NS, "isComposing", fmt_corpus.SEED_ISC, iscomposing.parse_iscomposing),
    ("imdn", fmt_corpus.IMDN_XML_NS, "imdn", fmt_corpus.SEED_IMDN, imdn.parse_imdn),
]
HOSTILE = {
    root: list(fmt_corpus.hostile_documents(ns, root, "").values()) for _, ns, root, _, _ in FORMATS
}


def random_tree(rng: random.Random, ns: str, root: str, depth: int = 0) -> str:
    parts = []
    if depth == 0:
        parts += rng.sample(fmt_corpus.REQUIRED[root], rng.randrange(3))
    for _ in range(rng.randrange(4 if depth < 4 else 1)):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.choice(fmt_corpus.TEXTS).replace("&", "&amp;").replace("<", "&lt;"))
        elif r < 0.4:
            parts.append(rng.choice(fmt_corpus.REFS))
        else:
            child_ns = rng.choice(fmt_corpus.NAMESPACES)
            local = rng.choice(fmt_corpus.LOCAL_NAMES)
            attrs = "".join(f' {k}="{v}"' for k, v in rng.sample(fmt_corpus.ATTRS[:-2], 2)
                            if rng.random() < 0.3)  # fmt: skip
            inner = random_tree(rng, ns, local, depth + 1)
            parts.append(f'<{local} xmlns="{child_ns}"{attrs}>{inner}</{local}>')
    if depth:
        return "".join(parts)
    return f'<{root} xmlns="{ns}">{"".join(parts)}</{root}>'


def xml_input(rng: random.Random) -> tuple[Callable[[bytes], object], bytes]:
    _, ns, root, seed, parse = rng.choice(FORMATS)
    r = rng.random()
    if r < 0.3:
        base = seed
    elif r < 0.85:
        base = random_tree(rng, ns, root).encode()
    else:
        base = rng.choice(HOSTILE[root])
    if rng.random() < 0.8:
        base = mutate(rng, base, XML_TOKENS, XML_VALUES)
    return parse, base


def run_xml(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        doc = parse(data)
    except FormatError:
        return
    if isinstance(doc, pidf.PresenceDocument):
        presence.pidf_to_xmpp(doc)
    elif isinstance(doc, iscomposing.IsComposing):
        iscomposing.chat_state_for(doc)
    elif isinstance(doc, imdn.Imdn):
        imdn.xmpp_outcome(doc, "x")


CPIM_TOKENS = [*fmt_corpus.CPIM_FRAGMENTS, *fmt_corpus.HOSTILE_FRAGMENTS]
CPIM_VALUES = [b" <im:a@b>", b" x", b":;lang=en x", b"", b" \\u0000", b' "q\\"" <a:b>']


def run_cpim(data: bytes) -> None:
    try:
        msg = cpim.parse_cpim(data, understood=None)
    except FormatError:
        return
    for read in (lambda: msg.from_, lambda: msg.to, lambda: msg.datetime,
                 lambda: msg.subjects, lambda: imdn.read_disposition_request(msg),
                 lambda: imdn.parse_notification(msg) if imdn.is_imdn(msg) else None,
                 lambda: cpim.check_require(msg)):  # fmt: skip
        with contextlib.suppress(FormatError):
            read()


JID_ALPHABET = [
    *" \"&'/:<>@\\.abcxyz09é\u0000\u200b",
    "\\20", "\\5c", "\\3a", "\\2f", "\\40", "\\5C", "\\4", "@", "/",
]  # fmt: skip


def run_jid(text: str) -> None:
    out = unescape_local(text)
    if len(out) > len(text):
        raise Finding("unescaping grew the text")
    try:
        escaped = escape_local(text)
    except JidError:
        pass
    else:
        if unescape_local(escaped) != text:
            raise Finding("XEP-0106 escape does not round-trip")
    try:
        jid = parse_jid(text)
    except JidError:
        return
    if parse_jid(str(jid)) != jid:
        raise Finding("JID does not round-trip")


def one(kind: str, rng: random.Random) -> tuple[bytes | str, Callable[[], None]]:
    """The input of this kind for the seeded `rng`, and a thunk running it."""
    if kind == "sip":
        data = sip_input(rng)
        return data, lambda: run_sip(data, rng)
    if kind == "xml":
        parse, body = xml_input(rng)
        return body, lambda: run_xml(parse, body)
    if kind == "cpim":
        base = rng.choice([fmt_corpus.SEED_CPIM, fmt_corpus.SEED_CPIM_IMDN])
        cpim_body = mutate(rng, base, CPIM_TOKENS, CPIM_VALUES)
        return cpim_body, lambda: run_cpim(cpim_body)
    text = "".join(rng.choice(JID_ALPHABET) for _ in range(rng.randrange(30)))
    return text, lambda: run_jid(text)


def input_seed(seed: int, kind: str, worker: int, index: int) -> int:
    return ((seed * 8 + KINDS.index(kind)) * 64 + worker) * 10**9 + index


# -- the worker ------------------------------------------------------------------------------


def work(  # noqa: PLR0917 (a multiprocessing target takes positional arguments)
    worker: int,
    plan: list[tuple[str, int]],
    seed: int,
    bound: float,
    sample: int,
    progress: Any,
    results: Any,
) -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    rng = random.Random()
    counts = dict.fromkeys(KINDS, 0)
    failures: list[dict[str, Any]] = []
    max_time, max_at = 0.0, ""
    rss: list[tuple[int, int]] = []
    done = 0
    for kind, count in plan:
        progress[1] = KINDS.index(kind)
        for index in range(count):
            progress[0] = index
            rng.seed(input_seed(seed, kind, worker, index))
            started = time.perf_counter()
            try:
                signal.setitimer(signal.ITIMER_REAL, bound)
                try:
                    one(kind, rng)[1]()
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Overrun:
                failures.append({"what": "overrun", "at": f"{kind}:{worker}:{index}"})
            except Exception as exc:  # the finding: anything escaping the module's errors
                failures.append(
                    {
                        "what": type(exc).__name__,
                        "at": f"{kind}:{worker}:{index}",
                        "error": str(exc)[:300],
                        "trace": traceback.format_exc()[-1500:],
                    }
                )
            elapsed = time.perf_counter() - started
            if elapsed > max_time:
                max_time, max_at = elapsed, f"{kind}:{worker}:{index}"
            counts[kind] += 1
            done += 1
            if done % sample == 0:
                rss.append((done, rss_bytes()))
            if len(failures) > 100:
                break
    rss.append((done, rss_bytes()))
    results.put(
        {
            "worker": worker,
            "counts": counts,
            "failures": failures,
            "max_time": max_time,
            "max_at": max_at,
            "rss": rss,
        }
    )


# -- the parent ------------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    workers = []
    totals = {"sip": args.sip, "xml": args.xml, "cpim": args.cpim, "jid": args.jid}
    shares = {kind: split(n, args.workers) for kind, n in totals.items()}
    started = time.monotonic()
    for w in range(args.workers):
        plan = [(kind, shares[kind][w]) for kind in KINDS]
        progress = ctx.Array("q", [0, 0], lock=False)
        proc = ctx.Process(
            target=work,
            args=(w, plan, args.seed, args.bound, args.sample, progress, results),
        )
        proc.start()
        workers.append((proc, progress, [-1, -1], time.monotonic()))
    reports: list[dict[str, Any]] = []
    hangs: list[dict[str, Any]] = []
    while len(reports) + len(hangs) < len(workers):
        while not results.empty():
            reports.append(results.get())
        for i, (proc, progress, last, since) in enumerate(workers):
            if not proc.is_alive():
                continue
            now_at = [progress[0], progress[1]]
            if now_at != last:
                workers[i] = (proc, progress, now_at, time.monotonic())
            elif time.monotonic() - since > args.hang:
                at = f"{KINDS[now_at[1]]}:{i}:{now_at[0]}"
                hangs.append({"what": "hang", "at": at})
                proc.kill()
        time.sleep(0.5)
        if all(not p.is_alive() for p, *_ in workers):
            while len(reports) + len(hangs) < len(workers) and not results.empty():
                reports.append(results.get())
            if len(reports) + len(hangs) < len(workers):
                time.sleep(1)
                while not results.empty():
                    reports.append(results.get())
                break
    for proc, *_ in workers:
        proc.join(10)
    elapsed = time.monotonic() - started
    return summarise(args, reports, hangs, elapsed)


def summarise(
    args: argparse.Namespace,
    reports: list[dict[str, Any]],
    hangs: list[dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    counts = {kind: sum(r["counts"][kind] for r in reports) for kind in KINDS}
    failures = [f for r in reports for f in r["failures"]] + hangs
    rss = []
    for r in reports:
        samples = r["rss"]
        # start after warm-up: the first sample (lxml, regex and parser caches filled)
        first, last = samples[0][1], samples[-1][1]
        rss.append(
            {
                "worker": r["worker"],
                "start_mib": round(first / 2**20, 1),
                "end_mib": round(last / 2**20, 1),
                "max_mib": round(max(s for _, s in samples) / 2**20, 1),
                "growth_mib": round((last - first) / 2**20, 1),
                "samples_mib": [
                    round(s / 2**20, 1) for _, s in samples[:: max(1, len(samples) // 12)]
                ],
            }
        )
    grew = [x for x in rss if x["growth_mib"] > args.rss_mb]
    slowest = max(reports, key=lambda r: r["max_time"]) if reports else None
    missing = len(reports) < args.workers
    return {
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, {platform.platform()}",
        "seed": args.seed,
        "elapsed_s": round(elapsed, 1),
        "inputs": counts,
        "xml_bodies": counts["xml"],
        "unhandled_exceptions": sum(1 for f in failures if f["what"] not in ("overrun", "hang")),
        "overruns": sum(1 for f in failures if f["what"] == "overrun"),
        "hangs": len(hangs),
        "bound_s": args.bound,
        "max_input_s": round(slowest["max_time"], 4) if slowest else None,
        "max_input_at": slowest["max_at"] if slowest else None,
        "rss": rss,
        "rss_growth_bound_mib": args.rss_mb,
        "failures": failures[:20],
        "ok": not failures and not grew and not missing,
    }


def replay(spec: str, seed: int) -> None:
    kind, worker, index = spec.split(":")
    rng = random.Random(input_seed(seed, kind, int(worker), int(index)))
    data, thunk = one(kind, rng)
    print(f"input {spec}: {data!r}")
    started = time.perf_counter()
    thunk()  # raises what the run recorded
    print(f"no exception, {time.perf_counter() - started:.4f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sip", type=int, default=1_000_000, help="SIP inputs")
    p.add_argument("--xml", type=int, default=100_000, help="PIDF/isComposing/IMDN bodies")
    p.add_argument("--cpim", type=int, default=50_000, help="message/cpim bodies")
    p.add_argument("--jid", type=int, default=50_000, help="XEP-0106 localparts / JIDs")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--bound", type=float, default=2.0, help="seconds per input (watchdog)")
    p.add_argument("--hang", type=float, default=60.0, help="seconds without progress")
    p.add_argument("--sample", type=int, default=10_000, help="inputs between RSS samples")
    p.add_argument("--rss-mb", type=float, default=64.0, help="allowed RSS growth per worker")
    p.add_argument("--json", type=Path, help="write the summary here too")
    p.add_argument("--replay", metavar="KIND:WORKER:INDEX", help="run one input again")
    args = p.parse_args()
    if args.replay:
        replay(args.replay, args.seed)
        return 0
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
