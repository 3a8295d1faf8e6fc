"""The INVITE dialog usage (gateway.sip.invite): the phase table, the 2xx retransmitted
until the ACK (RFC 3261 §13.3.1.4), CANCEL (§9), BYE (§15), re-INVITE (§14, RFC 3264 §8),
in-dialog checks (§12.2.2), the UAC side (§13.2.2) and the RFC 7573 fallback statuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.headers import parse_name_addr
from gateway.sip.invite import (
    PHASES,
    Ended,
    EndReason,
    Input,
    InviteSession,
    Phase,
    Reoffer,
    Reply,
    Resend2xx,
    Role,
    SendAck,
    SendBye,
    SendCancel,
)
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.timers import TimerConfig
from gateway.sip.uri import parse_uri

pytestmark = pytest.mark.unit

T = TimerConfig(t1=0.5, t2=4.0)
US = parse_name_addr("<sip:session@192.0.2.1:5060>")


def incoming(
    method: str = "INVITE", seq: int = 1, to_tag: str | None = None, body: bytes = b"v=0"
) -> SipRequest:
    to = "<sip:gw@192.0.2.1>" + ("" if to_tag is None else f";tag={to_tag}")
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-" + f"{method}{seq}"),
            ("Record-Route", "<sip:proxy.example.org;lr>"),
            ("From", "<sip:alice@example.org>;tag=a1"),
            ("To", to),
            ("Call-ID", "c1@example.org"),
            ("CSeq", f"{seq} {method}"),
            ("Contact", "<sip:alice@192.0.2.7>"),
        ]
    )
    return SipRequest(method, parse_uri("sip:gw@192.0.2.1"), headers, body)


def uas() -> InviteSession:
    return InviteSession(Role.UAS, incoming(), timers=T, contact=US, local_tag="g1")


def answered(now: float = 0.0) -> InviteSession:
    s = uas()
    s.answered(make_response(s.invite, 200, to_tag="g1"), b"v=0 answer", now)
    return s


def confirmed() -> InviteSession:
    s = answered()
    assert s.on_ack(incoming("ACK", 1, "g1", b""))
    return s


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("phase", "inp", "nxt"),
    [
        (Phase.OFFERED, Input.ANSWER, Phase.ACCEPTED),
        (Phase.OFFERED, Input.REFUSE, Phase.ENDED),
        (Phase.OFFERED, Input.CANCEL_IN, Phase.ENDED),
        (Phase.ACCEPTED, Input.ACK, Phase.CONFIRMED),
        (Phase.ACCEPTED, Input.ACK_TIMEOUT, Phase.ENDING),
        (Phase.ACCEPTED, Input.BYE_IN, Phase.ENDED),
        (Phase.CALLING, Input.PROVISIONAL, Phase.EARLY),
        (Phase.CALLING, Input.CANCEL_OUT, Phase.CANCELLING),
        (Phase.EARLY, Input.SUCCESS, Phase.CONFIRMED),
        (Phase.CANCELLING, Input.SUCCESS, Phase.ENDING),
        (Phase.CANCELLING, Input.FAILURE, Phase.ENDED),
        (Phase.CONFIRMED, Input.BYE_IN, Phase.ENDED),
        (Phase.CONFIRMED, Input.BYE_OUT, Phase.ENDING),
        (Phase.ENDING, Input.BYE_DONE, Phase.ENDED),
    ],
)
def test_phase_table_rows(phase: Phase, inp: Input, nxt: Phase) -> None:
    assert PHASES[(phase, inp)] is nxt


def test_nothing_leaves_ended_and_cancel_in_only_before_the_answer() -> None:
    assert not [k for k in PHASES if k[0] is Phase.ENDED]
    assert [k[0] for k in PHASES if k[1] is Input.CANCEL_IN] == [Phase.OFFERED]


# ---------------------------------------------------------------- UAS


def test_2xx_retransmitted_t1_doubling_to_t2_then_bye_at_64_t1() -> None:
    s = answered()
    assert s.phase is Phase.ACCEPTED and s.dialog is not None
    times: list[float] = []
    ended: list[object] = []
    while (d := s.deadline) is not None:
        acts = s.on_timer(d)
        if acts == [Resend2xx()]:
            times.append(d)
        else:
            ended = list(acts)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    bye, end = ended
    assert isinstance(bye, SendBye) and bye.request.method == "BYE"
    assert end == Ended(EndReason.NO_ACK)
    assert s.phase is Phase.ENDING
    s.bye_done()
    assert s.phase is Phase.ENDED


def test_timer_early_call_does_nothing() -> None:
    s = answered()
    assert s.on_timer(0.4) == [] and s.deadline == 0.5


def test_ack_stops_retransmission_only_if_it_matches() -> None:
    s = answered()
    assert not s.on_ack(incoming("ACK", 2, "g1", b""))  # another CSeq
    assert not s.on_ack(incoming("ACK", 1, "other", b""))  # another dialog
    assert s.deadline is not None
    assert s.on_ack(incoming("ACK", 1, "g1", b""))
    assert s.phase is Phase.CONFIRMED and s.deadline is None
    assert not s.on_ack(incoming("ACK", 1, "g1", b""))  # a retransmitted ACK: nothing new


def test_dialog_formed_as_uas() -> None:
    s = answered()
    assert s.dialog is not None
    assert (s.dialog.id.call_id, s.dialog.id.local_tag, s.dialog.id.remote_tag) == (
        "c1@example.org",
        "g1",
        "a1",
    )
    assert str(s.dialog.remote_target) == "sip:alice@192.0.2.7"
    assert [str(r.uri) for r in s.dialog.route_set] == ["sip:proxy.example.org;lr"]
    bye = s.hangup()[0]
    assert isinstance(bye, SendBye)
    assert str(bye.request.uri) == "sip:alice@192.0.2.7"
    assert bye.request.headers.get("Route") == "<sip:proxy.example.org;lr>"
    assert bye.request.from_tag == "g1" and bye.request.to_tag == "a1"


def test_cancel_before_the_answer_ends_with_487_and_not_after() -> None:
    s = uas()
    assert s.cancelled() == Ended(EndReason.CANCELLED, 487)
    assert s.phase is Phase.ENDED
    assert answered().cancelled() is None


def test_refused_invite_ends_the_session() -> None:
    s = uas()
    assert s.refused(488) == Ended(EndReason.REFUSED, 488)
    assert s.phase is Phase.ENDED and not s.live


@pytest.mark.parametrize("make", [answered, confirmed])
def test_bye_in_ends_the_session_with_200(make: object) -> None:
    s = make()  # type: ignore[operator]
    reply = s.on_request(incoming("BYE", 2, "g1", b""))
    assert reply == Reply(200, actions=(Ended(EndReason.BYE_IN),))
    assert s.phase is Phase.ENDED and s.deadline is None
    assert s.on_request(incoming("BYE", 3, "g1", b"")) == Reply(481)


def test_bye_crossing_ours_gets_200_without_a_second_end() -> None:
    s = confirmed()
    acts = s.hangup()
    assert isinstance(acts[0], SendBye) and acts[1] == Ended(EndReason.BYE_OUT)
    assert s.on_request(incoming("BYE", 2, "g1", b"")) == Reply(200)
    assert s.phase is Phase.ENDING


def test_lower_cseq_in_dialog_is_500() -> None:
    s = confirmed()
    assert s.on_request(incoming("INVITE", 5, "g1")) == Reoffer(incoming("INVITE", 5, "g1"))
    s.refused(488)
    reply = s.on_request(incoming("BYE", 4, "g1", b""))
    assert isinstance(reply, Reply) and reply.status == 500
    assert s.phase is Phase.CONFIRMED


def test_other_in_dialog_methods_get_405_with_allow() -> None:
    reply = confirmed().on_request(incoming("INFO", 2, "g1", b""))
    assert isinstance(reply, Reply) and reply.status == 405
    assert dict(reply.headers)["Allow"].startswith("INVITE")


def test_reinvite_answered_and_acked_keeps_the_session() -> None:
    s = confirmed()
    re = incoming("INVITE", 2, "g1")
    assert s.on_request(re) == Reoffer(re)
    s.answered(make_response(re, 200, to_tag="g1"), b"v=0 again", 10.0)
    assert s.deadline == 10.5 and s.phase is Phase.CONFIRMED
    assert s.on_ack(incoming("ACK", 2, "g1", b""))
    assert s.deadline is None and s.local_sdp == b"v=0 again"


def test_reinvite_refused_keeps_the_session() -> None:
    s = confirmed()
    s.on_request(incoming("INVITE", 2, "g1"))
    assert s.refused(488) is None
    assert s.phase is Phase.CONFIRMED and s.local_sdp == b"v=0 answer"


def test_second_reinvite_before_our_answer_is_500_with_retry_after() -> None:
    s = confirmed()
    s.on_request(incoming("INVITE", 2, "g1"))
    reply = s.on_request(incoming("INVITE", 3, "g1"))
    assert isinstance(reply, Reply) and reply.status == 500
    (name, value), *_ = reply.headers
    assert name == "Retry-After" and 0 <= int(value) <= 10  # §14.2


def test_offer_while_our_offer_awaits_its_answer_is_491() -> None:
    s = confirmed()
    re = incoming("INVITE", 2, "g1", b"")  # no offer: ours goes in the 2xx
    s.on_request(re)
    s.offered_in_answer()
    s.answered(make_response(re, 200, to_tag="g1"), b"v=0 offer", 1.0)
    assert s.on_request(incoming("INVITE", 3, "g1")) == Reply(491)
    assert s.on_ack(incoming("ACK", 2, "g1", b"v=0 answer")) and not s.offer_pending


def test_reinvite_while_ending_is_481() -> None:
    s = confirmed()
    s.hangup()
    assert s.on_request(incoming("INVITE", 2, "g1")) == Reply(481)


def test_unacked_reinvite_2xx_gives_up_with_bye() -> None:
    s = confirmed()
    re = incoming("INVITE", 2, "g1")
    s.on_request(re)
    s.answered(make_response(re, 200, to_tag="g1"), b"v=0", 0.0)
    acts = s.on_timer(32.0)
    assert isinstance(acts[0], SendBye) and acts[1] == Ended(EndReason.NO_ACK)


# ---------------------------------------------------------------- UAC


def outgoing() -> InviteSession:
    headers = Headers(
        [
            ("From", "<sip:juliet@xmpp.example>;tag=j1"),
            ("To", "<sip:bob@example.org>"),
            ("Call-ID", "out@gw"),
            ("CSeq", "1 INVITE"),
            ("Contact", str(US)),
        ]
    )
    req = SipRequest("INVITE", parse_uri("sip:bob@example.org"), headers, b"v=0 offer")
    return InviteSession(Role.UAC, req, timers=T, contact=US, local_tag="j1")


def response(s: InviteSession, status: int, tag: str = "b1") -> SipResponse:
    return make_response(
        s.invite,
        status,
        to_tag=tag,
        headers=[
            ("Contact", "<sip:bob@192.0.2.9:5070>"),
            ("Record-Route", "<sip:p2.example.org;lr>, <sip:p1.example.org;lr>"),
        ],
    )


def test_uac_2xx_acked_through_the_route_set_with_the_invite_cseq() -> None:
    s = outgoing()
    assert s.on_response(response(s, 180)) == [] and s.phase is Phase.EARLY
    (ack,) = s.on_response(response(s, 200))
    assert isinstance(ack, SendAck) and s.phase is Phase.CONFIRMED
    req = ack.request
    assert req.method == "ACK" and str(req.cseq) == "1 ACK"
    assert str(req.uri) == "sip:bob@192.0.2.9:5070"
    assert req.headers.get_all("Route") == ("<sip:p1.example.org;lr>", "<sip:p2.example.org;lr>")
    (bye, end) = s.hangup()
    assert isinstance(bye, SendBye) and str(bye.request.cseq) == "2 BYE"
    assert end == Ended(EndReason.BYE_OUT)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (415, EndReason.FALLBACK),
        (488, EndReason.FALLBACK),
        (606, EndReason.FALLBACK),
        (486, EndReason.REJECTED),
        (404, EndReason.REJECTED),
        (302, EndReason.REJECTED),
    ],
)
def test_uac_failures_and_the_rfc7573_fallback(status: int, reason: EndReason) -> None:
    s = outgoing()
    (end,) = s.on_response(response(s, status))
    assert isinstance(end, Ended) and (end.reason, end.status) == (reason, status)
    assert s.phase is Phase.ENDED


def test_uac_cancel_waits_for_a_provisional() -> None:
    s = outgoing()
    assert s.cancel() == [] and s.phase is Phase.CANCELLING
    assert s.on_response(response(s, 100)) == [SendCancel()]
    assert s.on_response(response(s, 180)) == []  # sent once
    assert s.on_response(response(s, 487)) == [Ended(EndReason.CANCELLED, 487)]


def test_uac_cancel_in_early_at_once_and_a_2xx_winning_the_race_is_hung_up() -> None:
    s = outgoing()
    s.on_response(response(s, 183))
    assert s.cancel() == [SendCancel()]
    ack, bye, end = s.on_response(response(s, 200))
    assert isinstance(ack, SendAck) and isinstance(bye, SendBye)
    assert end == Ended(EndReason.CANCELLED, 200)
    assert s.phase is Phase.ENDING


def test_uac_timeout_fails() -> None:
    s = outgoing()
    assert s.failed("Timer B") == [Ended(EndReason.FAILED, None, "Timer B")]
    assert s.failed("again") == []


# ---------------------------------------------------------------- properties

UAS_STEPS = st.lists(
    st.sampled_from(
        [
            "answer",
            "refuse",
            "cancel",
            "ack",
            "ack2",
            "bye",
            "reinvite",
            "reoffer_ok",
            "timer",
            "hangup",
            "bye_done",
            "low_cseq",
        ]
    ),
    max_size=25,
)


@settings(max_examples=300, derandomize=True)
@given(UAS_STEPS, st.lists(st.floats(0, 5), min_size=25, max_size=25))
def test_uas_any_order_ends_at_most_once_and_phases_follow_the_table(
    steps: list[str], gaps: list[float]
) -> None:
    s = uas()
    now, seq, ends = 0.0, 1, 0
    allowed = set(PHASES.values()) | {Phase.OFFERED}
    for step, gap in zip(steps, gaps, strict=False):
        now += gap
        acts: list[object] = []
        if step == "answer" and s.phase is Phase.OFFERED:
            s.answered(make_response(s.invite, 200, to_tag="g1"), b"a", now)
        elif step == "refuse" and s.phase is Phase.OFFERED:
            acts = [s.refused(488)]
        elif step == "cancel":
            acts = [s.cancelled()]
        elif step in ("ack", "ack2"):
            s.on_ack(incoming("ACK", seq if step == "ack" else seq + 1, "g1", b""))
        elif step in ("bye", "reinvite", "low_cseq"):
            seq = seq if step == "low_cseq" else seq + 1
            method = "BYE" if step == "bye" else "INVITE"
            r = s.on_request(incoming(method, seq - (step == "low_cseq"), "g1"))
            if isinstance(r, Reply):
                acts = list(r.actions)
                assert r.status in (200, 481, 491, 500)
            else:
                assert isinstance(r, Reoffer)
                s.answered(make_response(r.request, 200, to_tag="g1"), b"b", now)
        elif step == "timer" and s.deadline is not None:
            acts = list(s.on_timer(s.deadline))
            now = max(now, s.deadline or now)
        elif step == "hangup":
            acts = list(s.hangup())
        elif step == "bye_done":
            s.bye_done()
        ends += sum(isinstance(a, Ended) for a in acts)
        assert s.phase in allowed
        assert ends <= 1
        if s.phase is Phase.ENDED:
            assert s.deadline is None and ends == 1


UAC_STEPS = st.lists(
    st.sampled_from([100, 180, 200, 486, 487, 488, "cancel", "hangup", "bye_done", "fail"]),
    max_size=12,
)


@settings(max_examples=300, derandomize=True)
@given(UAC_STEPS)
def test_uac_any_order_one_end_one_cancel_ack_per_2xx(steps: list[int | str]) -> None:
    s = outgoing()
    ends = cancels = acks = successes = 0
    for step in steps:
        if step == "cancel":
            acts = s.cancel()
        elif step == "hangup":
            acts = s.hangup()
        elif step == "bye_done":
            s.bye_done()
            acts = []
        elif step == "fail":
            acts = s.failed("timeout")
        else:
            assert isinstance(step, int)
            before = s.phase
            acts = s.on_response(response(s, step))
            successes += step == 200 and before in (Phase.CALLING, Phase.EARLY, Phase.CANCELLING)
        ends += sum(isinstance(a, Ended) for a in acts)
        cancels += sum(isinstance(a, SendCancel) for a in acts)
        acks += sum(isinstance(a, SendAck) for a in acts)
        assert ends <= 1 and cancels <= 1
        assert acks == successes <= 1  # one dialog: the first 2xx is ACKed by us
        if cancels:
            assert s.phase is not Phase.CALLING
