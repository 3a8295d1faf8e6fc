"""RFC 6665 subscriber (§4.1) and notifier (§4.2) machines, RFC 3856 presence rules.

Fake clock, messages built by the other side's code and passed through the wire format.
Subscriber tests play the notifier with a `Dialog.as_uas`; the pair test joins the two
machines in memory.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest

from gateway.sip.dialog import Dialog
from gateway.sip.headers import parse_name_addr
from gateway.sip.message import SipMessage, SipRequest, SipResponse, make_response
from gateway.sip.notifier import (
    NOTIFY_REMOVAL_CODES,
    PRESENCE,
    NInput,
    Notifier,
    NState,
    PackageConfig,
    SubscribeDecision,
    check_subscribe,
)
from gateway.sip.notifier import TRANSITIONS as NOTIFIER_TRANSITIONS
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.subscriber import TRANSITIONS, SubInput, Subscriber, SubState
from gateway.sip.subscription import (
    Action,
    AnswerNotify,
    Authorized,
    NotifierAction,
    Pending,
    Removed,
    ScheduleRefresh,
    SendNotify,
    SendResponse,
    SendSubscribe,
    StateDocument,
    Terminated,
    TerminationCause,
    refresh_delay,
)
from gateway.sip.uri import parse_uri

PIDF = b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:r@x"/>'
DOC = StateDocument(PIDF, "application/pidf+xml")
TIMER_N = 32.0  # 64 * T1 with T1 = 0.5 s


def wire(msg: SipMessage) -> SipMessage:
    if isinstance(msg, SipRequest) and "Via" not in msg.headers:
        msg = msg.with_headers(msg.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"))
    return parse_message(serialize(msg))


def wreq(msg: SipRequest) -> SipRequest:
    out = wire(msg)
    assert isinstance(out, SipRequest)
    return out


def wresp(msg: SipResponse) -> SipResponse:
    out = wire(msg)
    assert isinstance(out, SipResponse)
    return out


def ids() -> Iterator[str]:
    return (f"id{n}" for n in itertools.count(1))


def new_subscriber() -> Subscriber:
    gen = ids()
    return Subscriber(
        parse_uri("sip:romeo@example.net"),
        local=parse_name_addr("<sip:juliet@example.com>"),
        remote=parse_name_addr("<sip:romeo@example.net>"),
        contact=parse_name_addr("<sip:juliet@gw.example.com>"),
        ids=lambda: next(gen),
    )


def only(actions: list[Action], kind: type[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list[Action]) -> SendSubscribe:
    (s,) = only(actions, SendSubscribe)
    assert isinstance(s, SendSubscribe)
    return s


def answer(actions: list[Action]) -> int:
    (a,) = only(actions, AnswerNotify)
    assert isinstance(a, AnswerNotify)
    return a.status


def ended(actions: list[Action]) -> Terminated:
    (t,) = only(actions, Terminated)
    assert isinstance(t, Terminated)
    return t


class FakeNotifier:
    """The far end, built from the dialog code (UAS side)."""

    def __init__(self, subscribe: SipRequest, tag: str = "n-tag") -> None:
        self.subscribe = wreq(subscribe)
        contact = parse_name_addr("<sip:romeo@192.0.2.9>")
        self.dialog = Dialog.as_uas(self.subscribe, tag, contact=contact)

    def response(self, status: int, **headers: str) -> SipResponse:
        extra = [(k.replace("_", "-"), v) for k, v in headers.items()]
        if status < 300:
            extra.append(("Contact", "<sip:romeo@192.0.2.9>"))
        return wresp(
            make_response(self.subscribe, status, to_tag=self.dialog.id.local_tag, headers=extra)
        )

    def response_to(self, request: SipRequest, status: int, **headers: str) -> SipResponse:
        extra = [(k.replace("_", "-"), v) for k, v in headers.items()]
        return wresp(make_response(wreq(request), status, headers=extra))

    def notify(self, state: str, body: bytes = b"", event: str = "presence") -> SipRequest:
        headers = [("Event", event), ("Subscription-State", state)]
        if body:
            headers.append(("Content-Type", "application/pidf+xml"))
        return wreq(self.dialog.new_request("NOTIFY", headers=headers, body=body))


def established(state: str = "active;expires=3600") -> tuple[Subscriber, FakeNotifier]:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    sub.receive_response(far.response(200, Expires="3600"), 0.1)
    sub.receive_notify(far.notify(state), 0.2)
    return sub, far


# ============================================================ subscriber: the table


S, I = SubState, SubInput  # noqa: E741
# RFC 6665 §4.1.2 diagram (plus same-state rows): (state, input) -> next state.
DIAGRAM = [
    (S.INIT, I.SUBSCRIBE, S.NOTIFY_WAIT),
    (S.NOTIFY_WAIT, I.NOTIFY_ACTIVE, S.ACTIVE),
    (S.NOTIFY_WAIT, I.NOTIFY_PENDING, S.PENDING),
    (S.NOTIFY_WAIT, I.NOTIFY_TERMINATED, S.TERMINATED),
    (S.NOTIFY_WAIT, I.TIMER_N, S.TERMINATED),
    (S.NOTIFY_WAIT, I.PERMANENT, S.TERMINATED),
    (S.NOTIFY_WAIT, I.FAILED, S.TERMINATED),
    (S.NOTIFY_WAIT, I.RETRY_LATER, S.TERMINATED),
    (S.NOTIFY_WAIT, I.NEW_DIALOG, S.TERMINATED),
    (S.NOTIFY_WAIT, I.OK, S.NOTIFY_WAIT),
    (S.NOTIFY_WAIT, I.MIN_EXPIRES, S.NOTIFY_WAIT),
    (S.PENDING, I.NOTIFY_ACTIVE, S.ACTIVE),
    (S.PENDING, I.NOTIFY_TERMINATED, S.TERMINATED),
    (S.PENDING, I.TIMER_N, S.TERMINATED),
    (S.PENDING, I.NEW_DIALOG, S.NOTIFY_WAIT),
    (S.ACTIVE, I.NOTIFY_PENDING, S.PENDING),
    (S.ACTIVE, I.NOTIFY_TERMINATED, S.TERMINATED),
    (S.ACTIVE, I.TIMER_N, S.TERMINATED),
    (S.ACTIVE, I.EXPIRED, S.TERMINATED),
    (S.ACTIVE, I.PERMANENT, S.TERMINATED),
    (S.ACTIVE, I.FAILED, S.TERMINATED),
    (S.ACTIVE, I.NEW_DIALOG, S.NOTIFY_WAIT),
    (S.ACTIVE, I.RETRY_LATER, S.ACTIVE),
    (S.ACTIVE, I.REFRESH_DUE, S.ACTIVE),
    (S.ACTIVE, I.UNSUBSCRIBE, S.ACTIVE),
    (S.TERMINATED, I.SUBSCRIBE, S.NOTIFY_WAIT),
    (S.TERMINATED, I.NOTIFY_ACTIVE, S.TERMINATED),
]


@pytest.mark.parametrize(("state", "inp", "nxt"), DIAGRAM)
def test_subscriber_table_rfc6665_4_1_2(state: SubState, inp: SubInput, nxt: SubState) -> None:
    assert TRANSITIONS[(state, inp)][0] is nxt


def test_subscriber_table_absorbs_the_rest() -> None:
    assert (S.TERMINATED, I.TIMER_N) not in TRANSITIONS
    assert (S.INIT, I.OK) not in TRANSITIONS


# ============================================================ subscriber: behaviour


def test_initial_subscribe_rfc3856_6_and_timer_n() -> None:
    sub = new_subscriber()
    s = sent(sub.subscribe(10.0))
    r = wreq(s.request)
    assert (s.expires, s.new_dialog) == (3600, False)
    assert r.method == "SUBSCRIBE" and str(r.uri) == "sip:romeo@example.net"
    assert r.headers.get("Event") == "presence"
    assert r.accept is not None and [a.mime for a in r.accept] == ["application/pidf+xml"]
    assert r.expires == 3600 and r.max_forwards == 70
    assert r.from_tag == "id2" and r.call_id == "id1" and r.to_tag is None
    assert r.cseq is not None and r.cseq.seq == 1
    assert [str(c.uri) for c in r.contacts] == ["sip:juliet@gw.example.com"]
    assert sub.state is SubState.NOTIFY_WAIT
    assert sub.next_deadline() == 10.0 + TIMER_N


def test_notify_before_200_creates_the_dialog_rfc6665_4_1_2_4() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    acts = sub.receive_notify(far.notify("active;expires=600", PIDF), 0.5)
    assert answer(acts) == 200
    assert only(acts, Authorized) == [Authorized()]
    assert only(acts, StateDocument) == [DOC]
    assert sub.state is SubState.ACTIVE and sub.dialog is not None
    assert sub.dialog.id.remote_tag == "n-tag"
    assert sub.timer_n_at is None
    assert sub.receive_response(far.response(200, Expires="600"), 0.6) == [
        ScheduleRefresh(0.6 + refresh_delay(600, TIMER_N))
    ]
    assert sub.state is SubState.ACTIVE


def test_202_is_treated_as_200_rfc6665_8_3_1() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    assert sub.receive_response(far.response(202, Expires="1200"), 0.1) == []
    assert sub.state is SubState.NOTIFY_WAIT and sub.expires_at == pytest.approx(1200.1)


def test_pending_then_active_r8048_03_04() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    acts = sub.receive_notify(far.notify("pending;expires=3600", PIDF), 1.0)
    assert answer(acts) == 200 and only(acts, Pending) == [Pending()]
    assert only(acts, StateDocument) == []  # nothing reaches XMPP while pending
    assert sub.state is SubState.PENDING
    acts = sub.receive_notify(far.notify("active;expires=3000", PIDF), 2.0)
    assert only(acts, Authorized) == [Authorized()] and only(acts, StateDocument) == [DOC]
    acts = sub.receive_notify(far.notify("active;expires=2990"), 12.0)
    assert answer(acts) == 200 and only(acts, Authorized) == [] and only(acts, StateDocument) == []


@pytest.mark.parametrize(
    "reason",
    [
        "deactivated",
        "probation",
        "rejected",
        "timeout",
        "giveup",
        "noresource",
        "invariant",
        "some-extension",
        None,
    ],
)
def test_notify_terminated_reasons_rfc6665_4_1_3(reason: str | None) -> None:
    sub, far = established()
    state = "terminated" + ("" if reason is None else f";reason={reason}") + ";retry-after=90"
    acts = sub.receive_notify(far.notify(state + ";expires=50"), 5.0)
    assert answer(acts) == 200
    t = ended(acts)
    assert t == Terminated(TerminationCause.NOTIFY, reason, retry_after=90, established=True)
    assert sub.state is SubState.TERMINATED and sub.next_deadline() is None
    assert answer(sub.receive_notify(far.notify("active"), 6.0)) == 481


def test_terminated_in_notify_wait_creates_no_subscription() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    acts = sub.receive_notify(far.notify("terminated;reason=rejected"), 1.0)
    assert ended(acts) == Terminated(TerminationCause.NOTIFY, "rejected")
    assert sub.state is SubState.TERMINATED


def test_timer_n_fires_without_notify_then_481_rfc6665_4_1_2_4() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    sub.receive_response(far.response(200, Expires="3600"), 0.2)
    assert sub.handle_timer(TIMER_N - 0.01) == []
    t = ended(sub.handle_timer(TIMER_N))
    assert t == Terminated(TerminationCause.TIMER_N, established=False)
    assert answer(sub.receive_notify(far.notify("active;expires=3600"), 40.0)) == 481


def test_timer_n_on_refresh_terminates_rfc6665_4_1_2_2() -> None:
    sub, _far = established()
    refresh_at = sub.next_deadline()
    assert refresh_at is not None and refresh_at == pytest.approx(0.2 + 3600 - TIMER_N)
    s = sent(sub.handle_timer(refresh_at))
    assert s.request.to_tag == "n-tag" and s.expires == 3600
    t = ended(sub.handle_timer(refresh_at + TIMER_N))
    assert t == Terminated(TerminationCause.TIMER_N, established=True)


def test_refresh_deadline_and_in_dialog_refresh() -> None:
    sub, far = established("active;expires=100")  # expires param is authoritative
    assert sub.expires_at == pytest.approx(100.2)
    assert sub.next_deadline() == pytest.approx(0.2 + max(100 - TIMER_N, 50))
    assert sub.handle_timer(60.0) == []
    s = sent(sub.handle_timer(68.2))
    r = wreq(s.request)
    assert r.cseq is not None and r.cseq.seq == 2 and r.call_id == "id1"
    assert r.expires == 3600 and str(r.uri) == "sip:romeo@192.0.2.9"
    acts = sub.receive_response(far.response_to(s.request, 200, Expires="1800"), 68.3)
    assert sub.expires_at == pytest.approx(68.3 + 1800)
    assert only(acts, ScheduleRefresh)
    acts = sub.receive_notify(far.notify("active;expires=1799"), 68.4)
    assert answer(acts) == 200 and sub.timer_n_at is None


def test_refresh_delay_policy() -> None:
    assert refresh_delay(3600, TIMER_N) == 3600 - TIMER_N
    assert refresh_delay(40, TIMER_N) == 20
    assert refresh_delay(0, TIMER_N) == 0


def test_423_retries_with_min_expires() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    s = sent(sub.receive_response(far.response(423, Min_Expires="7200"), 0.1))
    r = wreq(s.request)
    assert s.expires == 7200 and r.expires == 7200 and r.call_id == "id1"
    assert r.cseq is not None and r.cseq.seq == 2 and not s.new_dialog
    assert sub.state is SubState.NOTIFY_WAIT and sub.timer_n_at == pytest.approx(0.1 + TIMER_N)


def test_423_without_larger_min_expires_does_not_loop() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    t = ended(sub.receive_response(far.response(423, Min_Expires="60"), 0.1))
    assert t.cause is TerminationCause.RESPONSE and t.status == 423


def test_423_on_refresh_resends_in_dialog() -> None:
    sub, far = established()
    s = sent(sub.handle_timer(sub.next_deadline() or 0))
    s2 = sent(sub.receive_response(far.response_to(s.request, 423, Min_Expires="5000"), 3570))
    assert s2.request.to_tag == "n-tag" and s2.expires == 5000


def test_481_on_refresh_starts_a_new_dialog_r8048_06() -> None:
    sub, far = established()
    s = sent(sub.handle_timer(sub.next_deadline() or 0))
    s2 = sent(sub.receive_response(far.response_to(s.request, 481), 3570.0))
    r = wreq(s2.request)
    assert s2.new_dialog and r.to_tag is None
    assert (r.call_id, r.from_tag) == ("id3", "id4")
    assert r.cseq is not None and r.cseq.seq == 1
    assert sub.state is SubState.NOTIFY_WAIT and sub.dialog is None
    # the old dialog's NOTIFYs are not ours any more
    assert answer(sub.receive_notify(far.notify("active"), 3571.0)) == 481
    far2 = FakeNotifier(s2.request, tag="n2")
    acts = sub.receive_notify(far2.notify("active;expires=3600"), 3572.0)
    assert answer(acts) == 200 and only(acts, Authorized) == []  # authorization kept


@pytest.mark.parametrize("code", [403, 489, 603])
@pytest.mark.parametrize("refresh", [False, True])
def test_permanent_failures_r8048_06(code: int, refresh: bool) -> None:
    if refresh:
        sub, far = established()
        s = sent(sub.handle_timer(sub.next_deadline() or 0))
        resp = far.response_to(s.request, code)
    else:
        sub = new_subscriber()
        far = FakeNotifier(sent(sub.subscribe(0.0)).request)
        resp = far.response(code)
    t = ended(sub.receive_response(resp, 5.0))
    assert t == Terminated(TerminationCause.RESPONSE, status=code, established=refresh)


@pytest.mark.parametrize("code", [404, 604, 480, 501])
def test_refresh_failure_terminates_r6665_07(code: int) -> None:
    sub, far = established()
    s = sent(sub.handle_timer(sub.next_deadline() or 0))
    t = ended(sub.receive_response(far.response_to(s.request, code, Retry_After="30"), 3570))
    assert t == Terminated(TerminationCause.RESPONSE, status=code, retry_after=30, established=True)
    assert sub.state is SubState.TERMINATED


def test_other_refresh_failure_keeps_subscription_until_expiry() -> None:
    sub, far = established()
    s = sent(sub.handle_timer(sub.next_deadline() or 0))
    assert sub.receive_response(far.response_to(s.request, 500), 3570.0) == []
    assert sub.state is SubState.ACTIVE and sub.timer_n_at is None
    assert sub.next_deadline() == pytest.approx(3600.2)
    t = ended(sub.handle_timer(3600.2))
    assert t == Terminated(TerminationCause.EXPIRED, established=True)


def test_initial_failure_retry_later_reports_retry_after() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    t = ended(sub.receive_response(far.response(503, Retry_After="120 (maintenance)"), 0.1))
    assert t == Terminated(TerminationCause.RESPONSE, status=503, retry_after=120)
    s = sent(sub.subscribe(200.0))  # the presence layer retries: a new dialog
    assert s.new_dialog and wreq(s.request).call_id == "id3"


def test_forked_second_dialog_gets_481_rfc3856_6_9() -> None:
    sub = new_subscriber()
    req = sent(sub.subscribe(0.0)).request
    first, second = FakeNotifier(req, "fork-a"), FakeNotifier(req, "fork-b")
    assert answer(sub.receive_notify(first.notify("active;expires=3600"), 0.1)) == 200
    assert answer(sub.receive_notify(second.notify("active;expires=3600"), 0.2)) == 481
    # the 2xx from the other fork is ignored
    assert sub.receive_response(second.response(200, Expires="10"), 0.3) == []
    assert sub.expires_at == pytest.approx(3600.1)


def test_unsubscribe_then_final_notify_r8048_07() -> None:
    sub, far = established()
    s = sent(sub.unsubscribe(10.0))
    assert s.expires == 0 and wreq(s.request).expires == 0 and sub.refresh_at is None
    assert sub.receive_response(far.response_to(s.request, 200, Expires="0"), 10.1) == []
    acts = sub.receive_notify(far.notify("terminated;reason=timeout"), 10.2)
    t = ended(acts)
    assert answer(acts) == 200
    assert t == Terminated(TerminationCause.NOTIFY, "timeout", established=True, unsubscribing=True)


def test_unsubscribe_before_any_notify_ends_locally() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    t = ended(sub.unsubscribe(1.0))
    assert t == Terminated(TerminationCause.UNSUBSCRIBED, unsubscribing=True)
    assert answer(sub.receive_notify(far.notify("active;expires=3600"), 2.0)) == 481


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda r: r.with_headers(r.headers.set("Event", "dialog")), 489),
        (lambda r: r.with_headers(r.headers.set("Event", "presence;id=7")), 489),
        (lambda r: r.with_headers(r.headers.remove("Subscription-State")), 400),
        (lambda r: r.with_headers(r.headers.remove("Event")), 400),
        (lambda r: r.with_headers(r.headers.set("Call-ID", "other")), 481),
    ],
)
def test_bad_notify_rfc6665_4_1_3(mutate: object, status: int) -> None:
    sub, far = established()
    bad = mutate(far.notify("active;expires=3600"))  # type: ignore[operator]
    assert answer(sub.receive_notify(bad, 1.0)) == status
    assert sub.state is SubState.ACTIVE


def test_notify_with_lower_cseq_gets_500() -> None:
    sub, far = established()
    n2 = far.notify("active;expires=3600")
    n3 = far.notify("active;expires=3600")
    assert answer(sub.receive_notify(n3, 1.0)) == 200
    assert answer(sub.receive_notify(n2, 1.1)) == 500


def test_extension_substate_is_answered_and_ignored() -> None:
    sub, far = established()
    acts = sub.receive_notify(far.notify("waiting"), 1.0)
    assert [type(a) for a in acts] == [AnswerNotify] and answer(acts) == 200
    assert sub.state is SubState.ACTIVE


def test_subscriber_record_round_trip() -> None:
    sub, _far = established()
    rec = json.loads(json.dumps(sub.to_record()))
    back = Subscriber.from_record(rec)
    assert back.to_record() == rec
    a, b = sent(sub.unsubscribe(5.0)), sent(back.unsubscribe(5.0))
    assert a.request == b.request


def test_subscriber_record_in_notify_wait_accepts_the_notify() -> None:
    sub = new_subscriber()
    far = FakeNotifier(sent(sub.subscribe(0.0)).request)
    back = Subscriber.from_record(json.loads(json.dumps(sub.to_record())))
    assert answer(back.receive_notify(far.notify("active;expires=60"), 1.0)) == 200
    assert back.state is SubState.ACTIVE


# ============================================================ notifier: checks


SUBSCRIBE = (
    "SUBSCRIBE sip:juliet@gw.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKs1\n"
    "Max-Forwards: 70\n"
    "From: <sip:romeo@example.net>;tag=w1\n"
    "To: <sip:juliet@example.com>\n"
    "Call-ID: w-call\n"
    "CSeq: 1 SUBSCRIBE\n"
    "Contact: <sip:romeo@192.0.2.4>\n"
)


def subscribe(
    extra: str = "Event: presence\n", cseq: int = 1, to_tag: str | None = None
) -> SipRequest:
    text = SUBSCRIBE.replace("CSeq: 1", f"CSeq: {cseq}")
    if to_tag:
        text = text.replace(
            "To: <sip:juliet@example.com>", f"To: <sip:juliet@example.com>;tag={to_tag}"
        )
    msg = parse_message((text + extra + "Content-Length: 0\n\n").replace("\n", "\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ("", 489),
        ("Event: dialog\n", 489),
        ("Event: presence\nAccept: text/plain\n", 406),
        ("Event: presence\nAccept: application/pidf+xml;q=0\n", 406),
        ("Event: presence\nExpires: 30\n", 423),
        ("Event: presence\nExpires: 1\n", 423),
    ],
)
def test_check_subscribe_rejections_rfc6665_4_2_1_1(extra: str, status: int) -> None:
    resp = check_subscribe(subscribe(extra))
    assert isinstance(resp, SipResponse) and resp.status == status
    if status == 489:
        assert resp.allow_events == ("presence",)
    if status == 423:
        assert resp.min_expires == 60


@pytest.mark.parametrize(
    ("extra", "expires"),
    [
        ("Event: presence\n", 3600),  # RFC 3856 §6.4 default
        ("Event: presence\nExpires: 600\n", 600),
        ("Event: presence\nExpires: 999999\n", 86400),  # shortened, never lengthened
        ("Event: presence\nExpires: 0\n", 0),  # fetch / unsubscribe
        ("Event: presence\nAccept: application/pidf+xml;charset=utf-8, text/plain\n", 3600),
        ("Event: presence\nAccept: application/*\n", 3600),
        ("o: presence;id=4\nAccept: */*;q=0.5\n", 3600),
    ],
)
def test_check_subscribe_accepts(extra: str, expires: int) -> None:
    d = check_subscribe(subscribe(extra))
    assert isinstance(d, SubscribeDecision)
    assert d.expires == expires and d.content_type == "application/pidf+xml"


def test_423_only_below_one_hour_rfc6665_4_2_1_1() -> None:
    pkgs = {"presence": PackageConfig(min_expires=7200, default_expires=7200, max_expires=9000)}
    d = check_subscribe(subscribe("Event: presence\nExpires: 3600\n"), pkgs)
    assert isinstance(d, SubscribeDecision) and d.expires == 3600


# ============================================================ notifier: machine


CONTACT = parse_name_addr("<sip:juliet@gw.example.com>")


def accepted(
    extra: str = "Event: presence;id=9\nExpires: 600\n", *, authorized: bool = False
) -> tuple[Notifier, list[NotifierAction], SipRequest]:
    r = subscribe(extra)
    d = check_subscribe(r)
    assert isinstance(d, SubscribeDecision)
    n, acts = Notifier.accept(
        r, d, local_tag="gw1", contact=CONTACT, now=100.0, authorized=authorized, document=DOC
    )
    return n, acts, r


def responses(acts: list[NotifierAction]) -> list[SipResponse]:
    return [a.response for a in acts if isinstance(a, SendResponse)]


def notifies(acts: list[NotifierAction]) -> list[SipRequest]:
    return [wreq(a.request) for a in acts if isinstance(a, SendNotify)]


def test_accept_answers_200_then_notify_pending_r6665_14_15() -> None:
    n, acts, _ = accepted()
    (resp,) = responses(acts)
    (note,) = notifies(acts)
    assert resp.status == 200  # never 202
    assert resp.expires == 600 and resp.to_tag == "gw1"
    assert [str(c.uri) for c in resp.contacts] == ["sip:juliet@gw.example.com"]
    assert [type(a) for a in acts] == [SendResponse, SendNotify]
    assert note.headers.get("Event") == "presence;id=9"
    assert note.headers.get("Subscription-State") == "pending;expires=600"
    assert note.body == b"" and note.content_type is None  # nothing leaks while pending
    assert str(note.uri) == "sip:romeo@192.0.2.4"
    assert (note.from_tag, note.to_tag, note.call_id) == ("gw1", "w1", "w-call")
    assert n.state is NState.PENDING and n.next_deadline() == 700.0


def test_authorize_sends_active_with_remaining_expires_r6665_18() -> None:
    n, _, _ = accepted()
    (note,) = notifies(n.authorize(250.5))
    assert note.headers.get("Subscription-State") == "active;expires=449"
    assert note.body == PIDF and note.content_type is not None
    assert note.content_type.mime == "application/pidf+xml"
    assert n.state is NState.ACTIVE
    assert note.cseq is not None and note.cseq.seq == 2


def test_update_pending_is_kept_active_is_sent() -> None:
    n, _, _ = accepted()
    assert n.update(110.0, DOC) == []
    n.authorize(120.0)
    (note,) = notifies(n.update(130.0, StateDocument(b"<x/>", None)))
    assert note.body == b"<x/>" and note.content_type is not None
    assert note.content_type.mime == "application/pidf+xml"


def test_fetch_expires_0_gives_200_and_final_notify_r6665_04() -> None:
    n, acts, _ = accepted("Event: presence\nExpires: 0\n", authorized=True)
    (resp,) = responses(acts)
    (note,) = notifies(acts)
    assert resp.status == 200 and resp.expires == 0
    assert note.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert note.subscription_state is not None and note.subscription_state.expires is None
    assert note.body == PIDF  # the fetch may carry state
    assert n.state is NState.TERMINATED and n.next_deadline() is None
    assert n.receive_notify_response(wresp(make_response(note, 200)), 101.0) == [
        Removed("timeout", 200)
    ]
    assert n.to_record()["state"] == "removed"


def test_expiry_sends_final_notify_timeout_r6665_19() -> None:
    n, _, _ = accepted(authorized=True)
    assert n.handle_timer(699.9) == []
    (note,) = notifies(n.handle_timer(700.0))
    assert note.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert note.body == b""
    assert n.receive_notify_response(wresp(make_response(note, 481)), 701.0) == [
        Removed("timeout", 481)
    ]


@pytest.mark.parametrize("code", sorted(NOTIFY_REMOVAL_CODES))
def test_notify_failure_removes_r6665_20(code: int) -> None:
    n, acts, _ = accepted(authorized=True)
    (note,) = notifies(acts)
    assert n.receive_notify_response(wresp(make_response(note, code)), 101.0) == [
        Removed("notify-failed", code)
    ]
    assert n.state is NState.REMOVED


def test_notify_other_failure_keeps_and_timeout_removes() -> None:
    n, acts, _ = accepted(authorized=True)
    (note,) = notifies(acts)
    assert n.receive_notify_response(wresp(make_response(note, 500)), 101.0) == []
    assert n.receive_notify_response(wresp(make_response(note, 200)), 101.0) == []
    assert n.state is NState.ACTIVE
    assert n.notify_timeout(140.0) == [Removed("notify-timeout", None)]


def test_refresh_gives_new_expiry_and_current_state_r8048_12() -> None:
    n, _, _ = accepted(authorized=True)
    r = subscribe("Event: presence;id=9\nExpires: 1200\n", cseq=2, to_tag="gw1")
    acts = n.receive_subscribe(r, 400.0)
    (resp,) = responses(acts)
    (note,) = notifies(acts)
    assert resp.status == 200 and resp.expires == 1200
    assert note.headers.get("Subscription-State") == "active;expires=1200"
    assert note.body == PIDF and n.next_deadline() == 1600.0


@pytest.mark.parametrize(
    ("extra", "cseq", "status"),
    [
        ("Event: presence;id=9\nExpires: 10\n", 2, 423),
        ("Event: presence\nExpires: 600\n", 2, 489),  # id must match (RFC 6665 §8.2.1)
        ("Event: presence;id=9\nExpires: 600\n", 0, 500),  # CSeq lower (RFC 3261 §12.2.2)
    ],
)
def test_refresh_rejections(extra: str, cseq: int, status: int) -> None:
    n, _, _ = accepted(authorized=True)
    (resp,) = responses(n.receive_subscribe(subscribe(extra, cseq=cseq, to_tag="gw1"), 200.0))
    assert resp.status == status and n.state is NState.ACTIVE


def test_unsubscribe_in_dialog_r8048_13() -> None:
    n, _, _ = accepted(authorized=True)
    closed = StateDocument(b"<closed/>", "application/pidf+xml")
    r = subscribe("Event: presence;id=9\nExpires: 0\n", cseq=2, to_tag="gw1")
    acts = n.receive_subscribe(r, 300.0, final_document=closed)
    (resp,) = responses(acts)
    (note,) = notifies(acts)
    assert resp.status == 200 and resp.expires == 0
    assert note.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert note.body == b"<closed/>"
    late = subscribe("Event: presence;id=9\nExpires: 600\n", cseq=3, to_tag="gw1")
    assert [r.status for r in responses(n.receive_subscribe(late, 301.0))] == [481]


def test_reject_sends_terminated_rejected_r8048_11() -> None:
    n, _, _ = accepted()
    (note,) = notifies(n.reject(150.0, retry_after=None))
    assert note.headers.get("Subscription-State") == "terminated;reason=rejected"
    (note,) = notifies(accepted()[0].reject(150.0, "probation", retry_after=60))
    assert note.headers.get("Subscription-State") == "terminated;reason=probation;retry-after=60"


def test_final_notify_waits_for_its_own_answer() -> None:
    n, acts, _ = accepted(authorized=True)
    (first,) = notifies(acts)
    (final,) = notifies(n.reject(150.0))
    assert n.receive_notify_response(wresp(make_response(first, 200)), 151.0) == []
    assert n.receive_notify_response(wresp(make_response(final, 200)), 152.0) == [
        Removed("rejected", 200)
    ]


N, NI = NState, NInput
NOTIFIER_DIAGRAM = [
    (N.INIT, NI.SUBSCRIBE, N.PENDING),
    (N.INIT, NI.SUBSCRIBE_AUTHORIZED, N.ACTIVE),
    (N.INIT, NI.UNSUBSCRIBE, N.TERMINATED),
    (N.PENDING, NI.AUTHORIZE, N.ACTIVE),
    (N.PENDING, NI.EXPIRE, N.TERMINATED),
    (N.PENDING, NI.REJECT, N.TERMINATED),
    (N.PENDING, NI.NOTIFY_REMOVE, N.REMOVED),
    (N.ACTIVE, NI.EXPIRE, N.TERMINATED),
    (N.ACTIVE, NI.REJECT, N.TERMINATED),
    (N.ACTIVE, NI.UNSUBSCRIBE, N.TERMINATED),
    (N.ACTIVE, NI.NOTIFY_REMOVE, N.REMOVED),
    (N.ACTIVE, NI.REFRESH, N.ACTIVE),
    (N.TERMINATED, NI.NOTIFY_OK, N.REMOVED),
]


@pytest.mark.parametrize(("state", "inp", "nxt"), NOTIFIER_DIAGRAM)
def test_notifier_table_rfc6665_4_2_2(state: NState, inp: NInput, nxt: NState) -> None:
    assert NOTIFIER_TRANSITIONS[(state, inp)][0] is nxt


def test_notifier_record_round_trip() -> None:
    n, _, _ = accepted(authorized=True)
    rec = json.loads(json.dumps(n.to_record()))
    assert rec["last_notify_cseq"] == 1 and rec["expires_at"] == 700.0
    back = Notifier.from_record(rec, PRESENCE)
    assert back == n
    assert notifies(back.update(200.0, DOC)) == notifies(n.update(200.0, DOC))


# ============================================================ the pair, in memory


def test_subscriber_and_notifier_pair() -> None:
    """X2S subscriber against the S2X notifier: subscribe, authorize, refresh, unsubscribe."""
    sub = new_subscriber()
    table: dict[str, Notifier] = {}
    inbox: list[Action | NotifierAction] = list(sub.subscribe(0.0))
    now = 0.0
    events: list[object] = []
    for _ in range(50):  # bound on rounds (livelock guard)
        if not inbox:
            break
        act = inbox.pop(0)
        if isinstance(act, SendSubscribe):
            r = wreq(act.request)
            if r.to_tag is None:
                d = check_subscribe(r)
                assert isinstance(d, SubscribeDecision)
                n, out = Notifier.accept(r, d, local_tag="gw", contact=CONTACT, now=now)
                table["n"] = n
            else:
                out = table["n"].receive_subscribe(r, now)
            inbox.extend(out)
        elif isinstance(act, SendResponse):
            inbox.extend(sub.receive_response(wresp(act.response), now))
        elif isinstance(act, SendNotify):
            got = sub.receive_notify(wreq(act.request), now)
            for a in got:
                if isinstance(a, AnswerNotify):
                    inbox.extend(table["n"].receive_notify_response(wresp(a.response), now))
            inbox.extend(a for a in got if not isinstance(a, AnswerNotify))
        else:
            events.append(act)
            if isinstance(act, Pending):
                inbox.extend(table["n"].authorize(now, DOC))
            elif isinstance(act, ScheduleRefresh) and act.at < 4000 and now < 3000:
                now = act.at
                inbox.extend(sub.handle_timer(now))
            elif isinstance(act, StateDocument) and now > 3000 and not sub.unsubscribing:
                inbox.extend(sub.unsubscribe(now))
    assert not inbox
    assert [type(e).__name__ for e in events] == [
        "ScheduleRefresh",  # pending NOTIFY: refresh scheduled ...
        "Pending",  # ... the refresh goes out, then the XMPP side authorizes
        "ScheduleRefresh",  # 200 to the refresh
        "Authorized",
        "StateDocument",
        "ScheduleRefresh",  # active NOTIFY after authorize
        "ScheduleRefresh",  # NOTIFY answering the refresh
        "StateDocument",  # -> unsubscribe
        "Removed",  # notifier: final NOTIFY answered
        "Terminated",  # subscriber: final NOTIFY seen
    ]
    assert Authorized() in events and DOC in events
    term = [e for e in events if isinstance(e, Terminated)]
    assert len(term) == 1 and term[0].reason == "timeout" and term[0].unsubscribing
    assert table["n"].state is NState.REMOVED and sub.state is SubState.TERMINATED


def test_credentials_resend_keeps_matching_rfc3261_22_2() -> None:
    sub = new_subscriber()
    first = sent(sub.subscribe(0.0)).request
    assert sub.key == ("id1", "id2")
    s = sent(sub.send_with_credentials([("Authorization", 'Digest username="j"')], 1.0))
    r = wreq(s.request)
    assert r.headers.get("Authorization") == 'Digest username="j"'
    assert r.cseq is not None and r.cseq.seq == 2 and r.call_id == first.call_id
    assert r.expires == 3600 and sub.timer_n_at == pytest.approx(1.0 + TIMER_N)
    far = FakeNotifier(s.request)
    sub.receive_response(far.response(200, Expires="600"), 1.1)
    assert sub.expires_at == pytest.approx(601.1)  # the answer to the resent request counts
