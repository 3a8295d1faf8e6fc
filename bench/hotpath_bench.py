"""Per-message pure costs (issue 11, round 4): each case runs the current code and the
reference copy kept for the exactness tests (tests/unit/hotpath_oracle/: the modules or
function bodies as they were before the fast paths), over the same inputs, on one core.

Inputs vary per call (200 users, tags, Call-IDs), so nothing is flattered by repetition.
Rates come from this process's CPU time; `x` is new rate / old rate.

    python -m bench.hotpath_bench [-n 20000] [--repeat 5] [--cpu 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import mappings.addresses as new_addresses
import mappings.jid as new_jid
import mappings.model as new_model
from gateway.sip import ua
from gateway.sip import validate as new_validate
from gateway.sip.message import SipRequest, make_response, make_response_from_headers
from gateway.sip.parser import parse_message
from tests.unit.hotpath_oracle import addresses as old_addresses
from tests.unit.hotpath_oracle import jid as old_jid
from tests.unit.hotpath_oracle import model as old_model
from tests.unit.hotpath_oracle.sip import (
    old_check_syntax,
    old_make_response_from_headers,
    old_prepare_request,
)

__all__ = ["main", "run"]

USERS = 200


def _message(i: int) -> bytes:
    body = f"Hello number {i}, are you coming to the meeting at 3?".encode()
    lines = [
        f"MESSAGE sip:juliet{i % USERS}@xmpp.example SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i:08x};rport",
        "Max-Forwards: 70",
        f'From: "Romeo {i % USERS}" <sip:romeo{i % USERS}@sip.example.org>;tag=t{i}',
        f"To: <sip:juliet{i % USERS}@xmpp.example>",
        f"Call-ID: {i:x}a84b4c76e66710@192.0.2.10",
        "CSeq: 1 MESSAGE",
        "User-Agent: baresip v3.10.1 (x86_64/linux)",
        "Content-Type: text/plain;charset=UTF-8",
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def _s2x(addresses: Any, model: Any) -> Callable[[int], object]:
    """SIP->XMPP mapping of one MESSAGE: both URIs to JIDs, the neutral MessageOp, forwarded."""
    dm = addresses.DomainMap(
        "sip.example.org", addresses.AddressingMode.MIRRORED, frozenset({"xmpp.example"})
    )

    # the identity parser (issue 25 renamed it; the frozen copy keeps the old name)
    parse = getattr(addresses, "parse_address", None) or addresses.parse_uri

    def case(i: int) -> object:
        u = i % USERS
        to = addresses.sip_target_to_jid(f"sip:juliet{u}@xmpp.example", domain_map=dm)
        frm = addresses.sip_uri_to_jid(f"sip:romeo{u}@sip.example.org", domain_map=dm)
        src = parse(f"sip:romeo{u}@sip.example.org").address
        dst = parse(f"sip:juliet{u}@xmpp.example").address
        op = model.MessageOp(
            src,
            dst,
            f"{i:x}a84b4c76e66710@192.0.2.10",
            (model.BodyPart.plain("hi"),),
            thread=f"{i:x}a84b4c76e66710@192.0.2.10",
        )
        return to, frm, op.forwarded()

    return case


def _x2s(addresses: Any, jid: Any) -> Callable[[int], object]:
    """XMPP->SIP mapping of one message: parse both JIDs, the target and source URIs."""
    dm = addresses.DomainMap(
        "sip.example.org", addresses.AddressingMode.MIRRORED, frozenset({"xmpp.example"})
    )

    def case(i: int) -> object:
        u = i % USERS
        to = jid.parse_jid(f"romeo{u}@sip.example.org")
        frm = jid.parse_jid(f"juliet{u}@xmpp.example/balcony{u}")
        target = addresses.jid_to_sip_target(to, domain_map=dm)
        source = addresses.jid_to_sip_uri(frm, domain_map=dm)
        return str(target), str(source), source.name_addr()

    return case


def _requests(n: int) -> list[SipRequest]:
    out = []
    for i in range(n):
        msg = parse_message(_message(i))
        assert isinstance(msg, SipRequest)
        out.append(msg)
    return out


def _fresh(requests: list[SipRequest]) -> list[SipRequest]:
    """Requests as the gateway builds them to send (public constructor, no views yet)."""
    return [
        SipRequest(r.method, r.uri, r.headers.remove("Via").remove("Max-Forwards"))
        for r in requests
    ]


def run(n: int = 20_000, repeat: int = 5) -> list[tuple[str, float, float]]:
    """(case, old rate/s, new rate/s) for each case; median of `repeat` runs of `n` calls."""
    parsed = _requests(min(n, 2_000))
    outgoing = _fresh(parsed)
    count = len(parsed)

    def prep(fn: Callable[..., SipRequest]) -> Callable[[int], object]:
        return lambda i: fn(
            outgoing[i % count],
            transport="udp",
            host="192.0.2.1",
            port=5060,
            branch=f"z9hG4bK{i:x}",
            user_agent="cpim-gateway",
        )

    def resp(fn: Callable[..., object]) -> Callable[[int], object]:
        return lambda i: fn(parsed[i % count].headers, 200, to_tag=f"gw{i}")

    def syntax(fn: Callable[[SipRequest], None]) -> Callable[[int], object]:
        def case(i: int) -> object:
            r = parsed[i % count]
            # a copy without the cached lazy views, as a freshly parsed request has
            fresh = SipRequest._trusted(r.method, r.uri, r.headers, r.body)
            fresh.__dict__.update(
                {
                    k: r.__dict__[k]
                    for k in ("cseq", "vias", "from_", "to", "max_forwards")
                    if k in r.__dict__
                }
            )
            return fn(fresh)

        return case

    cases: dict[str, tuple[Callable[[int], object], Callable[[int], object]]] = {
        "s2x mapping (2 URIs->JIDs, MessageOp)": (
            _s2x(old_addresses, old_model),
            _s2x(new_addresses, new_model),
        ),
        "x2s mapping (2 JIDs->URIs)": (_x2s(old_addresses, old_jid), _x2s(new_addresses, new_jid)),
        "parse_jid": (
            lambda i: old_jid.parse_jid(f"juliet{i % USERS}@xmpp.example/r"),
            lambda i: new_jid.parse_jid(f"juliet{i % USERS}@xmpp.example/r"),
        ),
        "MessageOp": (
            lambda i: old_model.MessageOp(
                old_model.Address("a", "b.c"),
                old_model.Address("d", "e.f"),
                f"id{i}-x" * 4,
                (old_model.BodyPart.plain("hi"),),
                thread=f"t{i}",
            ),
            lambda i: new_model.MessageOp(
                new_model.Address("a", "b.c"),
                new_model.Address("d", "e.f"),
                f"id{i}-x" * 4,
                (new_model.BodyPart.plain("hi"),),
                thread=f"t{i}",
            ),
        ),
        "prepare_request": (prep(old_prepare_request), prep(ua.prepare_request)),
        "make_response(request) 200": (
            lambda i: old_make_response_from_headers(
                parsed[i % count].headers, 200, to_tag=f"gw{i}"
            ),
            lambda i: make_response(parsed[i % count], 200, to_tag=f"gw{i}"),
        ),
        "make_response_from_headers 200": (
            resp(old_make_response_from_headers),
            resp(make_response_from_headers),
        ),
        "validate _check_syntax": (syntax(old_check_syntax), syntax(new_validate._check_syntax)),
    }
    rows = []
    for name, (old, new) in cases.items():
        old_rates, new_rates = [], []
        for _ in range(repeat):  # interleaved, so machine load hits both alike
            old_rates.append(_rate(old, n))
            new_rates.append(_rate(new, n))
        rows.append((name, statistics.median(old_rates), statistics.median(new_rates)))
    return rows


def _rate(fn: Callable[[int], object], n: int) -> float:
    gc.collect()
    start = time.process_time()
    for i in range(n):
        fn(i)
    return n / max(time.process_time() - start, 1e-9)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(f"load average {os.getloadavg()[0]:.2f}; n={args.n}, repeat={args.repeat}")
    print(f"{'case':<40} {'old /s':>10} {'new /s':>10} {'old us':>7} {'new us':>7} {'x':>5}")
    for name, old, new in run(args.n, args.repeat):
        print(
            f"{name:<40} {old:>10,.0f} {new:>10,.0f} {1e6 / old:>7.1f} {1e6 / new:>7.1f}"
            f" {new / old:>5.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
