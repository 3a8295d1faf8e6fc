"""The pure SIP user-agent core (gateway.sip.useragent) in memory: bytes and time in,
bytes out through a recording driver. Receive -> handler -> respond, the one drain policy,
OPTIONS, 513, stateless errors, the §18.1.1 plan, client waiters, the error boundary, and
the origin carried per request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipMessage, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction_events import Origin
from gateway.sip.ua import SizePlan
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import (
    IncomingRequest,
    MessageTooLarge,
    TransactionTimeout,
    TransportFailure,
    UserAgent,
)

pytestmark = pytest.mark.unit

PEER = ("192.0.2.7", 5060)
UDP = Origin("udp-main")


class Driver:
    """Records what the core asks of its I/O side."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sent: list[tuple[str, tuple[str, int], bytes]] = []
        self.spawned: list[tuple[IncomingRequest, Awaitable[None]]] = []
        self.deadline: float | None = None
        self.fail_with: OSError | None = None

    def now(self) -> float:
        return self.t

    def transmit(self, transport: str, dest: tuple[str, int], data: bytes) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((transport, dest, data))

    def spawn(self, request: IncomingRequest, work: Awaitable[None]) -> None:
        self.spawned.append((request, work))

    def timer_changed(self, deadline: float | None) -> None:
        self.deadline = deadline

    def traced(self, *args: Any) -> None:
        pass

    def responses(self) -> list[SipResponse]:
        out = [parse_message(data) for _, _, data in self.sent]
        return [m for m in out if isinstance(m, SipResponse)]


class Handler:
    def __init__(self, act: Callable[[IncomingRequest], Any] | None = None) -> None:
        self.seen: list[IncomingRequest] = []
        self.act = act

    def handle(self, request: IncomingRequest) -> Awaitable[None] | None:
        self.seen.append(request)
        return self.act(request) if self.act is not None else None


def make(
    act: Callable[[IncomingRequest], Any] | None = None, **kw: Any
) -> tuple[UserAgent, Driver, Handler]:
    driver, handler = Driver(), Handler(act)
    kw.setdefault("max_message_size", 65535)
    ua = UserAgent(handler, driver, user_agent="gw/test", timers=TimerConfig(t1=0.5), **kw)
    return ua, driver, handler


def wire(method: str = "MESSAGE", *, branch: str = "z9hG4bK-1", body: bytes = b"hi") -> bytes:
    head = (
        f"{method} sip:gw@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch={branch};rport\r\n"
        "From: <sip:alice@example.org>;tag=a1\r\n"
        "To: <sip:gw@192.0.2.1>\r\n"
        f"Call-ID: {branch}@example.org\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def receive(ua: UserAgent, data: bytes, origin: Origin = UDP, transport: str = "udp") -> bool:
    def reply(out: bytes) -> None:
        ua.driver.transmit("stateless", PEER, out)

    return ua.receive(data, PEER, transport, origin, now=ua.driver.now(), reply=reply)


def test_request_goes_to_the_handler_and_its_response_out() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    assert receive(ua, wire()) is False
    (incoming,) = handler.seen
    assert incoming.request.method == "MESSAGE" and incoming.source == PEER
    assert (incoming.transport, incoming.listener) == ("udp", "udp-main")
    (resp,) = driver.responses()
    assert resp.status == 200 and resp.to_tag == incoming.to_tag
    assert driver.sent[0][:2] == ("udp", PEER)  # through the server transaction
    assert ua.stats.requests_in == 1 and ua.stats.responses_out == 1
    assert driver.deadline is not None  # Timer J keeps the transaction


def test_a_retransmission_is_absorbed_and_answered_again() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    receive(ua, wire())
    receive(ua, wire())
    assert len(handler.seen) == 1
    assert [r.status for r in driver.responses()] == [200, 200]
    assert ua.stats.retransmissions_in == 1


@pytest.mark.parametrize("retry_after", [None, 120])
def test_draining_answers_503_with_the_one_retry_after(retry_after: int | None) -> None:
    kw = {} if retry_after is None else {"retry_after": retry_after}
    ua, driver, handler = make(lambda r: r.reply(200), **kw)
    ua.begin_drain()
    receive(ua, wire())
    assert handler.seen == []
    (resp,) = driver.responses()
    assert resp.status == 503
    assert resp.headers.get("Retry-After") == str(retry_after or 30)


def test_options_is_answered_by_the_core() -> None:
    ua, driver, handler = make()
    receive(ua, wire("OPTIONS", body=b""))
    assert handler.seen == []
    (resp,) = driver.responses()
    assert resp.status == 200 and "MESSAGE" in resp.allow
    assert resp.headers.get("Server") == "gw/test"


def test_oversize_request_gets_513_statelessly() -> None:
    ua, driver, handler = make(max_message_size=400)
    receive(ua, wire(body=b"x" * 400))
    assert handler.seen == []
    ((transport, _, data),) = driver.sent
    resp = parse_message(data)
    assert transport == "stateless" and isinstance(resp, SipResponse) and resp.status == 513
    assert len(ua.layer) == 0  # no transaction for it


def test_unparseable_request_gets_a_stateless_400() -> None:
    ua, driver, handler = make()
    data = wire().replace(b"CSeq: 1 MESSAGE", b"CSeq: one MESSAGE")
    assert receive(ua, data) is False
    assert handler.seen == [] and ua.stats.parse_errors == 1
    ((transport, _, out),) = driver.sent
    assert transport == "stateless" and out.startswith(b"SIP/2.0 400 ")
    assert b"\r\nCall-ID: z9hG4bK-1@example.org\r\n" in out  # copied from what could be read


def test_invalid_request_is_refused_before_the_handler() -> None:
    ua, driver, handler = make()
    receive(ua, wire("FOO", body=b""))
    assert handler.seen == []
    assert [r.status for r in driver.responses()] == [501]


def test_origin_travels_with_each_request() -> None:
    """Two listeners, the second request arriving while the first one's handler runs:
    each request keeps its own listener, connection and certificate."""
    tls = Origin("tls-main", 7, {"subject": ((("commonName", "peer"),),)})

    def nested(request: IncomingRequest) -> None:
        if request.listener == "udp-main":  # the TLS request comes in meanwhile
            receive(ua, wire(branch="z9hG4bK-2"), tls, "tls")

    ua, driver, handler = make(nested)
    receive(ua, wire(branch="z9hG4bK-1"))
    first, second = handler.seen
    assert (first.listener, first.connection_id, first.peer_certificate) == ("udp-main", None, None)
    assert first.transport == "udp"
    assert (second.listener, second.connection_id) == ("tls-main", 7)
    assert second.peer_certificate == tls.peer_certificate and second.transport == "tls"
    second.reply(202)
    first.reply(200)
    by_call = {r.call_id: r.status for r in driver.responses()}
    assert by_call == {"z9hG4bK-1@example.org": 200, "z9hG4bK-2@example.org": 202}


def test_an_awaitable_is_handed_to_the_driver() -> None:
    async def later() -> None:
        return None

    ua, driver, _ = make(lambda r: later())
    receive(ua, wire())
    ((incoming, work),) = driver.spawned
    assert incoming.request.method == "MESSAGE"
    work.close()  # type: ignore[attr-defined]  # a coroutine never awaited here


class Refused(Exception):
    """Shaped like mappings.errors.MappingError: the core reads `sip_status` only."""

    sip_status = 488


@pytest.mark.parametrize(
    ("exc", "status", "header"),
    [
        (Refused("no"), 488, None),
        (RemoteProtocolError("bad ext", 420, extra_headers=[("Unsupported", "foo")]), 420, "foo"),
        (RuntimeError("bug"), 500, None),
    ],
)
def test_the_error_boundary(exc: Exception, status: int, header: str | None) -> None:
    def fail(request: IncomingRequest) -> None:
        raise exc

    ua, driver, _ = make(fail)
    receive(ua, wire())
    (resp,) = driver.responses()
    assert resp.status == status
    assert resp.headers.get("Unsupported") == header
    assert ua.stats.handler_errors == (1 if status == 500 else 0)


def test_the_boundary_leaves_an_answered_request_alone() -> None:
    ua, driver, _ = make()
    receive(ua, wire())
    incoming = ua.handler.seen[0]  # type: ignore[attr-defined]
    incoming.reply(200)
    ua.handler_failed(incoming, RuntimeError("after the answer"))
    assert [r.status for r in driver.responses()] == [200]


# ---------------------------------------------------------------- client transactions


def _request(body: bytes = b"hello") -> SipRequest:
    headers = Headers(
        [
            ("From", "<sip:gw@192.0.2.1>;tag=g1"),
            ("To", "<sip:bob@example.org>"),
            ("Call-ID", "out-1"),
            ("CSeq", "1 MESSAGE"),
            ("Content-Type", "text/plain"),
        ]
    )
    return SipRequest("MESSAGE", parse_uri("sip:bob@192.0.2.9"), headers, body)


def _sent_by(dest: tuple[str, int]) -> tuple[str, int] | None:
    return ("192.0.2.1", 5060)


def test_plan_small_udp_request_is_prepared_for_udp() -> None:
    ua, _, _ = make()
    target = Target("udp", "192.0.2.9", "192.0.2.9", 5060)
    ip, plan, size, ready = ua.plan(_request(), target, True, _sent_by)
    assert (ip, plan) == ("192.0.2.9", SizePlan("udp", None))
    assert ready is not None and ready.data is not None and ready.dest == ("192.0.2.9", 5060)
    wired = parse_message(ready.data)
    assert isinstance(wired, SipRequest) and wired.top_via is not None
    assert (wired.top_via.host, wired.top_via.port) == ("192.0.2.1", 5060)
    assert size < 1300


def test_plan_large_udp_request_goes_over_tcp() -> None:
    ua, _, _ = make()
    target = Target("udp", "192.0.2.9", "192.0.2.9", 5060)
    _, plan, size, _ = ua.plan(_request(b"x" * 2000), target, True, _sent_by)
    assert plan == SizePlan("tcp", "udp") and size > 2000
    _, plan, _, _ = ua.plan(_request(b"x" * 2000), target, False, _sent_by)
    assert plan == SizePlan("udp", None)  # the target allows no TCP: UDP it is


def test_plan_reliable_target_keeps_its_transport_and_errors() -> None:
    ua, _, _ = make(max_message_size=1500)
    tcp = Target("tcp", "192.0.2.9", "192.0.2.9", 5060)
    assert ua.plan(_request(b"x" * 5000), tcp, True, _sent_by)[1:3] == (SizePlan("tcp", None), 0)
    udp = Target("udp", "192.0.2.9", "192.0.2.9", 5060)
    with pytest.raises(MessageTooLarge):
        ua.plan(_request(b"x" * 2000), udp, False, _sent_by)
    with pytest.raises(TransportFailure, match="no address"):
        ua.plan(_request(), Target("udp", "example.org", None, 5060), True, _sent_by)


def _start(ua: UserAgent) -> list[tuple[SipResponse | None, Exception | None]]:
    results: list[tuple[SipResponse | None, Exception | None]] = []
    target = Target("udp", "192.0.2.9", "192.0.2.9", 5060)
    _, _, _, ready = ua.plan(_request(), target, True, _sent_by)
    assert ready is not None
    ua.start_client(ready, "udp", ua.driver.now(), lambda r, e: results.append((r, e)))
    ua.process()
    return results


def _answer(sent: bytes, status: int) -> bytes:
    req = parse_message(sent)
    assert isinstance(req, SipRequest)
    lines = [f"SIP/2.0 {status} X"]
    lines += [
        f"{n}: {v}" for n, v in req.headers.items() if n in ("Via", "From", "To", "Call-ID", "CSeq")
    ]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def test_client_transaction_settles_with_the_final_response() -> None:
    ua, driver, _ = make()
    results = _start(ua)
    ((transport, dest, data),) = driver.sent
    assert (transport, dest) == ("udp", ("192.0.2.9", 5060))
    receive(ua, _answer(data, 180))
    assert results == [] and len(ua.clients) == 1
    receive(ua, _answer(data, 200))
    ((resp, exc),) = results
    assert exc is None and resp is not None and resp.status == 200
    assert not ua.clients


def test_client_transaction_times_out_at_timer_f() -> None:
    ua, driver, _ = make()
    results = _start(ua)
    while not results:
        assert driver.deadline is not None
        driver.t = driver.deadline
        ua.handle_timer(driver.t)
    ((resp, exc),) = results
    assert resp is None and isinstance(exc, TransactionTimeout)
    assert driver.t == pytest.approx(100.0 + 64 * 0.5)
    assert len(driver.sent) > 1  # Timer E retransmitted meanwhile


def test_client_transaction_fails_when_it_cannot_be_sent() -> None:
    ua, driver, _ = make()
    driver.fail_with = OSError("no route")
    results = _start(ua)
    ((resp, exc),) = results
    assert resp is None and isinstance(exc, TransportFailure) and "no route" in str(exc)


def test_fail_clients_settles_what_is_left() -> None:
    ua, _, _ = make()
    results = _start(ua)
    ua.fail_clients(TransportFailure("stopped"))
    assert [type(e) for _, e in results] == [TransportFailure] and not ua.clients


def test_messages_are_only_bytes_to_the_driver() -> None:
    """Nothing leaves the core but through `transmit` and the stateless `reply`."""
    ua, driver, _ = make(lambda r: r.reply(200))
    receive(ua, wire())
    assert all(isinstance(d, bytes) for _, _, d in driver.sent)
    assert isinstance(parse_message(driver.sent[0][2]), SipMessage)


# -- overload control (issue 27) ------------------------------------------------------------


def in_dialog(method: str, *, branch: str) -> bytes:
    return wire(method, branch=branch).replace(
        b"To: <sip:gw@192.0.2.1>", b"To: <sip:gw@192.0.2.1>;tag=t1"
    )


def test_overload_refuses_new_requests_statelessly_with_retry_after() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    asked: list[int] = []

    def admission() -> int | None:
        asked.append(1)
        return 9

    ua.admission = admission
    receive(ua, wire())
    assert handler.seen == [] and len(asked) == 1
    (resp,) = driver.responses()
    assert resp.status == 503 and resp.headers.get("Retry-After") == "9"
    assert driver.sent[0][0] == "stateless"  # back to the source, no transaction
    assert len(ua.layer) == 0 and driver.deadline is None
    assert ua.stats.overload_refused == 1
    receive(ua, wire())  # the same request again: refused again, still nothing kept
    assert [r.status for r in driver.responses()] == [503, 503] and len(ua.layer) == 0


def test_overload_never_refuses_retransmissions_or_work_already_admitted() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    receive(ua, wire(branch="z9hG4bK-first"))  # admitted before the overload
    ua.admission = lambda: 5
    receive(ua, wire(branch="z9hG4bK-first"))  # its retransmission: the layer answers
    for i, method in enumerate(("BYE", "NOTIFY", "MESSAGE")):  # in a dialog: To tag
        receive(ua, in_dialog(method, branch=f"z9hG4bK-d{i}"))
    assert [r.request.method for r in handler.seen] == ["MESSAGE", "BYE", "NOTIFY", "MESSAGE"]
    assert 503 not in [r.status for r in driver.responses()]
    assert ua.stats.overload_refused == 0


def test_overload_admits_when_the_admission_says_so() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    ua.admission = lambda: None
    receive(ua, wire())
    assert len(handler.seen) == 1 and [r.status for r in driver.responses()] == [200]


def test_draining_takes_precedence_over_overload() -> None:
    ua, driver, _ = make(lambda r: r.reply(200), retry_after=44)
    ua.admission = lambda: 5
    ua.begin_drain()
    receive(ua, wire())
    (resp,) = driver.responses()
    assert resp.headers.get("Retry-After") == "44" and ua.stats.overload_refused == 0


def test_overload_refuses_invite_with_its_transaction() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    ua.admission = lambda: 3
    receive(ua, wire("INVITE"))
    assert handler.seen == []
    (resp,) = driver.responses()
    assert resp.status == 503 and resp.headers.get("Retry-After") == "3"
    assert driver.sent[0][0] == "udp" and len(ua.layer) == 1  # kept for the ACK (§17.2.1)


def test_a_copy_of_a_refused_request_is_refused_again_even_once_admitting() -> None:
    """The copy queued behind the refused one must not be delivered: its sender saw 503."""
    ua, driver, handler = make(lambda r: r.reply(200))
    answers = iter([4, None, None])
    ua.admission = lambda: next(answers)
    receive(ua, wire(branch="z9hG4bK-a"))  # refused
    receive(ua, wire(branch="z9hG4bK-a"))  # its retransmission: refused again, not asked
    receive(ua, wire(branch="z9hG4bK-b"))  # a new request: admitted
    assert [r.request.call_id for r in handler.seen] == ["z9hG4bK-b@example.org"]
    statuses = [(r.status, r.headers.get("Retry-After")) for r in driver.responses()]
    assert statuses == [(503, "4"), (503, "4"), (200, None)]
    assert ua.stats.overload_refused == 2 and ua.stats.retransmissions_in == 1


def test_refused_keys_are_kept_in_two_bounded_generations(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.sip.useragent as core

    monkeypatch.setattr(core, "REFUSED_MEMO", 2)
    ua, _driver, handler = make(lambda r: r.reply(200))
    refusing = [True]
    ua.admission = lambda: 6 if refusing[0] else None
    for i in range(5):  # generations: [0, 1] -> [2, 3] (old [0, 1]) -> [4] (old [2, 3])
        receive(ua, wire(branch=f"z9hG4bK-{i}"))
    refusing[0] = False
    for i in range(5):
        receive(ua, wire(branch=f"z9hG4bK-{i}"))
    assert sorted(r.request.call_id for r in handler.seen) == [
        "z9hG4bK-0@example.org",
        "z9hG4bK-1@example.org",
    ]


def test_overload_never_refuses_a_re_invite_in_a_dialog() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    ua.admission = lambda: 3
    receive(ua, in_dialog("INVITE", branch="z9hG4bK-re"))
    assert [r.request.method for r in handler.seen] == ["INVITE"]
    assert [r.status for r in driver.responses()] == [200]
