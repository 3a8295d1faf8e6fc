"""Per-message pure costs (issue 11, round 4; issue 25): each production function on the
hot path against a bare baseline measured in the same run over the same inputs, on one core.

The bare baseline of a case is the floor any implementation pays for it: the string
splitting, formatting and tuple building the result needs, with none of the checks.
Inputs vary per call (200 users, tags, Call-IDs), so nothing is flattered by repetition.
Rates come from this process's CPU time; `vs bare` is rate / bare rate.

    python -m bench.hotpath_bench [-n 20000] [--repeat 5] [--cpu 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence

from gateway.sip import ua, validate
from gateway.sip.message import SipRequest, make_response, make_response_from_headers
from gateway.sip.parser import parse_message
from mappings import addresses, jid, model

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


def _s2x() -> Callable[[int], object]:
    """SIP->XMPP mapping of one MESSAGE: both URIs to JIDs, the neutral MessageOp, forwarded."""
    dm = addresses.DomainMap(
        "sip.example.org", addresses.AddressingMode.MIRRORED, frozenset({"xmpp.example"})
    )

    # the identity parser; a tree from before issue 25 (before/after runs) calls it parse_uri
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


def _x2s() -> Callable[[int], object]:
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


def _bare_s2x(i: int) -> object:
    """Both URIs split into user and host, the operation as a plain tuple."""
    u = i % USERS
    to = f"sip:juliet{u}@xmpp.example".partition(":")[2].partition("@")
    frm = f"sip:romeo{u}@sip.example.org".partition(":")[2].partition("@")
    call_id = f"{i:x}a84b4c76e66710@192.0.2.10"
    return (to[0], to[2]), (frm[0], frm[2]), (frm, to, call_id, ("hi",), call_id, 69)


def _bare_x2s(i: int) -> object:
    """Both JIDs split at "@" and "/", the two URIs formatted."""
    u = i % USERS
    to = f"romeo{u}@sip.example.org".partition("@")
    frm = f"juliet{u}@xmpp.example/balcony{u}".partition("@")
    host, _, resource = frm[2].partition("/")
    source = f"sip:{frm[0]}@{host};gr={resource}"
    return f"sip:{to[0]}@{to[2]}", source, f"<{source}>"


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
    """(case, bare rate/s, rate/s) for each case; median of `repeat` runs of `n` calls."""
    parsed = _requests(min(n, 2_000))
    outgoing = _fresh(parsed)
    count = len(parsed)

    def prep(i: int) -> object:
        return ua.prepare_request(
            outgoing[i % count],
            transport="udp",
            host="192.0.2.1",
            port=5060,
            branch=f"z9hG4bK{i:x}",
            user_agent="cpim-gateway",
        )

    def bare_prep(i: int) -> object:
        """The Via formatted and the header tuple extended: no checks, no new message."""
        via = f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i:x};rport"
        items = outgoing[i % count].headers.items()
        return (("Via", via), *items, ("Max-Forwards", "70"), ("User-Agent", "cpim-gateway"))

    def bare_resp(i: int) -> object:
        """The pairs a response copies (§8.2.6.2), picked by name, the To tag appended."""
        out = [p for p in parsed[i % count].headers.items() if p[0] in _COPIED]
        return (200, "OK", [(n, f"{v};tag=gw{i}" if n == "To" else v) for n, v in out])

    def fresh(i: int) -> SipRequest:
        r = parsed[i % count]
        # a copy without the cached lazy views, as a freshly parsed request has
        out = SipRequest._trusted(r.method, r.uri, r.headers, r.body)
        out.__dict__.update(
            {
                k: r.__dict__[k]
                for k in ("cseq", "vias", "from_", "to", "max_forwards")
                if k in r.__dict__
            }
        )
        return out

    def syntax(i: int) -> object:
        validate._check_syntax(fresh(i))
        return None

    def bare_syntax(i: int) -> object:
        """The copy made, the mandatory names looked up in the header keys."""
        keys = set(fresh(i).headers.keys())
        return all(k in keys for k in _MANDATORY)

    cases: dict[str, tuple[Callable[[int], object], Callable[[int], object]]] = {
        "s2x mapping (2 URIs->JIDs, MessageOp)": (_bare_s2x, _s2x()),
        "x2s mapping (2 JIDs->URIs)": (_bare_x2s, _x2s()),
        "parse_jid": (
            lambda i: f"juliet{i % USERS}@xmpp.example/r".partition("@")[2].partition("/"),
            lambda i: jid.parse_jid(f"juliet{i % USERS}@xmpp.example/r"),
        ),
        "MessageOp": (
            lambda i: (("a", "b.c"), ("d", "e.f"), f"id{i}-x" * 4, ("hi",), f"t{i}"),
            lambda i: model.MessageOp(
                model.Address("a", "b.c"),
                model.Address("d", "e.f"),
                f"id{i}-x" * 4,
                (model.BodyPart.plain("hi"),),
                thread=f"t{i}",
            ),
        ),
        "prepare_request": (bare_prep, prep),
        "make_response(request) 200": (
            bare_resp,
            lambda i: make_response(parsed[i % count], 200, to_tag=f"gw{i}"),
        ),
        "make_response_from_headers 200": (
            bare_resp,
            lambda i: make_response_from_headers(parsed[i % count].headers, 200, to_tag=f"gw{i}"),
        ),
        "validate _check_syntax": (bare_syntax, syntax),
    }
    rows = []
    for name, (bare, real) in cases.items():
        bare_rates, rates = [], []
        for _ in range(repeat):  # interleaved, so machine load hits both alike
            bare_rates.append(_rate(bare, n))
            rates.append(_rate(real, n))
        rows.append((name, statistics.median(bare_rates), statistics.median(rates)))
    return rows


_COPIED = frozenset({"Via", "From", "To", "Call-ID", "CSeq"})
_MANDATORY = ("to", "from", "cseq", "call-id", "max-forwards", "via")


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
    print(f"{'case':<40} {'bare /s':>10} {'rate /s':>10} {'bare us':>7} {'us':>7} {'vs bare':>7}")
    for name, bare, rate in run(args.n, args.repeat):
        print(
            f"{name:<40} {bare:>10,.0f} {rate:>10,.0f} {1e6 / bare:>7.1f} {1e6 / rate:>7.1f}"
            f" {rate / bare:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
