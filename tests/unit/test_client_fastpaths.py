"""The client-side fast paths of issue 11 against the slow paths they replace.

1. `UserAgent.plan` measures a UDP request from the request it will send (our Via)
   plus `probe_via_delta`, instead of building and serializing a throwaway "probe" with
   the Via the size decision assumes (the target's address, port 65535). The sizes must
   be equal for any request, address family, port, transport spelling and branch.
2. `presence.context._Failover` drives RFC 3263 §4.3 failover through `request_nowait`
   callbacks; `send_with_failover` + `PresenceContext.send`'s error mapping is the oracle:
   same final response or the same `SendFailed` (status, text, timeout), the same
   "target failed" log lines, the same targets tried, for random outcome sequences.
3. `TransactionLayer.send_request` given the bytes and the branch the endpoint already has
   against the layer encoding the request and parsing its Via itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bridge.failover import send_with_failover
from gateway.bridge.presence.context import SendFailed, _Failover
from gateway.sip.errors import LocalProtocolError
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.serializer import serialize
from gateway.sip.transaction import new_branch
from gateway.sip.transaction_layer import TransactionLayer
from gateway.sip.ua import format_host, prepare_request
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import (
    MessageTooLarge,
    TransactionTimeout,
    TransportFailure,
    probe_via_delta,
)
from mappings.errors import MappingError

# ------------------------------------------------------------------ 1. size without a probe

_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=12)
_value = (
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("é€ü"),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda xs: ":".join(f"{x:x}" for x in xs)
)
_ip = st.one_of(_ipv4, _ipv6, st.sampled_from(["127.0.0.1", "::1", "fe80::1", "10.0.0.200"]))


@st.composite
def _requests(draw: st.DrawFn) -> SipRequest:
    method = draw(st.sampled_from(["NOTIFY", "SUBSCRIBE", "MESSAGE", "OPTIONS", "PUBLISH"]))
    host = draw(st.one_of(_ipv4, st.just("example.com"), _ipv6.map(lambda h: f"[{h}]")))
    user = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=12))
    uri = parse_uri(f"sip:{user}@{host}:{draw(st.integers(1, 65535))}")
    items = [
        ("From", f"<sip:gw@127.0.0.1>;tag={draw(_token)}"),
        ("To", f"<sip:{draw(_token)}@example.com>"),
        ("Call-ID", draw(_token)),
        ("CSeq", f"{draw(st.integers(1, 2**31 - 1))} {method}"),
    ]
    if draw(st.booleans()):
        items.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    if draw(st.booleans()):
        items.append(("User-Agent", draw(_value)))
    for _ in range(draw(st.integers(0, 4))):
        items.append((f"X-{draw(_token)}", draw(_value)))
    body = draw(st.binary(max_size=300))
    if body:
        items.append(("Content-Type", "application/pidf+xml"))
    return SipRequest(method, uri, Headers(items), body)


@settings(max_examples=200, deadline=None)
@given(
    req=_requests(),
    target_ip=_ip,
    local_ip=_ip,
    local_port=st.integers(1, 65535),
    spelling=st.sampled_from(["udp", "UDP", "Udp"]),
    user_agent=st.one_of(st.none(), _value),
    same_branch=st.booleans(),
)
def test_udp_size_from_the_prepared_request_equals_the_probe(
    req: SipRequest,
    target_ip: str,
    local_ip: str,
    local_port: int,
    spelling: str,
    user_agent: str | None,
    same_branch: bool,
) -> None:
    branch = new_branch()
    # the old code: a probe with its own branch, serialized only to be measured
    probe = prepare_request(
        req,
        transport=spelling,
        host=target_ip,
        port=65535,
        branch=branch if same_branch else new_branch(),
        user_agent=user_agent,
    )
    ours = prepare_request(
        req, transport="udp", host=local_ip, port=local_port, branch=branch, user_agent=user_agent
    )
    size = len(serialize(ours)) + probe_via_delta(spelling, target_ip, local_ip, local_port, branch)
    assert size == len(serialize(probe))


def test_probe_via_delta_brackets_ipv6() -> None:
    b = new_branch()
    assert probe_via_delta("udp", "::1", "::1", 65535, b) == 0
    assert probe_via_delta("udp", "127.0.0.1", "127.0.0.1", 5060, b) == len("65535") - len("5060")
    assert probe_via_delta("udp", "::1", "127.0.0.1", 65535, b) == len(format_host("::1")) - 9


# ------------------------------------------------------------------ 2. callback failover

Outcome = tuple[str, int]  # ("response", status) | ("timeout", 0) | ("transport", k) | ("bug", 0)

_outcome = st.one_of(
    st.tuples(st.just("response"), st.sampled_from([200, 202, 404, 481, 500, 503, 503])),
    st.tuples(st.just("timeout"), st.just(0)),
    st.tuples(st.just("transport"), st.sampled_from([0, 1, 2])),
    st.tuples(st.just("bug"), st.just(0)),
)


def _notify() -> SipRequest:
    items = [
        ("From", "<sip:juliet@localhost>;tag=a"),
        ("To", "<sip:w1@127.0.0.1>;tag=b"),
        ("Call-ID", "fan-1"),
        ("CSeq", "7 NOTIFY"),
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfan"),
    ]
    return SipRequest("NOTIFY", parse_uri("sip:w1@127.0.0.1:5070"), Headers(items))


def _error(kind: str, k: int) -> Exception:
    if kind == "timeout":
        return TransactionTimeout("no final response (NOTIFY)")
    if kind == "bug":
        return RuntimeError("a bug")
    return [
        TransportFailure("udp to x: refused"),
        MessageTooLarge("9000 bytes"),
        TransportFailure(""),
    ][k]


def _targets(n: int) -> list[Target]:
    return [Target("udp", "127.0.0.1", "127.0.0.1", 5070 + i) for i in range(n)]


Result = tuple[str, Any]


def _old(
    req: SipRequest, targets: list[Target], outcomes: list[Outcome]
) -> tuple[Result, list[int]]:
    """`PresenceContext.send` over `send_with_failover` (the in-dialog path)."""
    tried: list[int] = []

    async def send(t: Target) -> SipResponse:
        i = len(tried)
        tried.append(t.port)
        kind, x = outcomes[i]
        if kind == "response":
            return make_response(req, x)
        raise _error(kind, x)

    async def run() -> Result:
        try:
            _, response, _ = await send_with_failover(
                targets,
                send,
                timeouts=(TransactionTimeout,),
                transport_errors=(TransportFailure, MessageTooLarge),
            )
        except MappingError as exc:
            status = exc.sip_status or 503
            return ("failed", (status, str(exc), status == 408))
        except RuntimeError as exc:  # a bug: the task failed (logged by Tasks)
            return ("bug", str(exc))
        return ("response", response.status)

    return asyncio.run(run()), tried


def _new(
    req: SipRequest, targets: list[Target], outcomes: list[Outcome]
) -> tuple[Result, list[int]]:
    tried: list[int] = []
    results: list[Result] = []
    pending: list[Callable[[], None]] = []  # callbacks run later, as the endpoint does

    def request_nowait(r: SipRequest, t: Target, on_final: Callable[..., None]) -> None:
        i = len(tried)
        tried.append(t.port)
        kind, x = outcomes[i]
        if kind == "response":
            resp = make_response(r, x)
            pending.append(lambda: on_final(resp, None))
        else:
            exc = _error(kind, x)
            pending.append(lambda: on_final(None, exc))

    def done(response: SipResponse | None, error: SendFailed | None) -> None:
        if error is not None:
            results.append(("failed", (error.status, str(error), error.timeout)))
        elif response is not None:
            results.append(("response", response.status))
        else:
            results.append(("bug", "a bug"))

    _Failover(req, targets, request_nowait, done).next()
    while pending:
        pending.pop(0)()
    assert len(results) == 1
    return results[0], tried


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(0, 4), outcomes=st.lists(_outcome, min_size=4, max_size=4))
def test_callback_failover_matches_send_with_failover(
    n: int, outcomes: list[Outcome], caplog: pytest.LogCaptureFixture
) -> None:
    req, targets = _notify(), _targets(n)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.bridge.failover"):
        old = _old(req, targets, outcomes)
        old_logs = _failover_lines(caplog.records)
        caplog.clear()
        new = _new(req, targets, outcomes)
        new_logs = _failover_lines(caplog.records)
    assert new == old
    assert new_logs == old_logs


def _failover_lines(records: list[logging.LogRecord]) -> list[tuple[str, int, Any]]:
    return [
        (r.getMessage(), r.levelno, getattr(r, "fields", None))
        for r in records
        if r.name == "gateway.bridge.failover"
    ]


def test_no_target_is_404_as_before() -> None:
    result, tried = _new(_notify(), [], [])
    assert tried == []
    assert result == ("failed", (404, "no target to try", False))


# ------------------------------------------------------------------ 3. send_request with bytes


def _out(layer: TransactionLayer) -> list[tuple[bytes, Any, str, Any, bool]]:
    return [
        (o.data, o.dest, o.transport, o.key, o.retransmission) for o in layer.messages_to_send()
    ]


@settings(max_examples=200, deadline=None)
@given(req=_requests(), transport=st.sampled_from(["udp", "tcp"]), give_branch=st.booleans())
def test_send_request_with_bytes_and_branch_is_the_same_transaction(
    req: SipRequest, transport: str, give_branch: bool
) -> None:
    """What `request_nowait` hands the layer (the bytes it measured, the branch it wrote)
    makes the same transaction as the layer encoding and parsing the Via itself: same
    key, same datagrams, same Timer E retransmissions, same Timer F timeout."""
    branch = new_branch()
    prepared = prepare_request(req, transport=transport, host="127.0.0.1", port=5060, branch=branch)
    dest = ("127.0.0.2", 5070)
    slow, fast = TransactionLayer(), TransactionLayer()
    k1 = slow.send_request(prepared, dest, transport, 0.0)
    k2 = fast.send_request(
        prepared,
        dest,
        transport,
        0.0,
        data=serialize(prepared),
        branch=branch if give_branch else None,
    )
    assert k1 == k2
    assert _out(slow) == _out(fast)
    t = 0.0
    while (at := slow.get_timer()) is not None:
        assert fast.get_timer() == at
        t = at
        slow.handle_timer(t)
        fast.handle_timer(t)
        assert _out(slow) == _out(fast)
        assert [type(e) for e in iter(slow.next_event, None)] == [
            type(e) for e in iter(fast.next_event, None)
        ]
    assert fast.get_timer() is None and len(slow) == len(fast) == 0


def test_send_request_checks_a_given_branch_like_the_via() -> None:
    items = [("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx1"), ("CSeq", "1 NOTIFY")]
    req = SipRequest("NOTIFY", parse_uri("sip:a@127.0.0.1"), Headers(items))
    layer = TransactionLayer()
    # a bad branch given is ignored: the Via decides, as without it
    assert (
        layer.send_request(req, ("127.0.0.1", 5060), "udp", 0.0, branch="xyz").branch == "z9hG4bKx1"
    )
    no_cseq = SipRequest("NOTIFY", req.uri, Headers(items[:1]))
    with pytest.raises(LocalProtocolError):
        layer.send_request(no_cseq, ("127.0.0.1", 5060), "udp", 0.0, branch="z9hG4bKx2")
