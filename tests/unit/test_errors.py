"""Error tables: RFC 7247 §7 Tables 2 and 3, RFC 6120 §8.3.3 types, RFC 8048/6665 outcomes."""

from __future__ import annotations

import pytest

from gateway.sip import status as sip_status
from gateway.sip.subscription import Terminated, TerminationCause
from mappings.errors import (
    REASON_PHRASES,
    SIP_TO_XMPP,
    XMPP_CONDITIONS,
    MappingError,
    Resubscribe,
    SipStatus,
    SubscriptionEnd,
    TerminationAction,
    XmppErrorInfo,
    XmppNotice,
    reason_phrase,
    refresh_failure_notice,
    sip_to_xmpp,
    subscribe_response_outcome,
    subscription_end,
    termination_action,
    xmpp_error_type,
    xmpp_to_sip,
)

# RFC 7247 §7.1 Table 2, transcribed from the RFC: condition -> (full JID, bare JID).
TABLE_2 = [
    ("bad-request", 400, 400),
    ("conflict", 400, 400),
    ("feature-not-implemented", 405, 501),  # note (1)
    ("forbidden", 403, 603),  # note (2)
    ("gone", 410, 410),  # note (3), no new address
    ("internal-server-error", 500, 500),
    ("item-not-found", 404, 604),
    ("jid-malformed", 400, 400),
    ("not-acceptable", 406, 606),
    ("not-allowed", 403, 403),
    ("not-authorized", 401, 401),
    ("policy-violation", 403, 403),
    ("recipient-unavailable", 480, 600),
    ("redirect", 302, 302),
    ("registration-required", 407, 407),
    ("remote-server-not-found", 404, 404),  # note (4): case (a) chosen
    ("remote-server-timeout", 408, 408),
    ("resource-constraint", 500, 500),
    ("service-unavailable", 403, 403),  # note (5): 403 chosen, never 503
    ("subscription-required", 400, 400),
    ("undefined-condition", 400, 400),
    ("unexpected-request", 400, 400),  # "491 or 400": 400 chosen
]

# RFC 7247 §7.2 Table 3, transcribed from the RFC.
TABLE_3 = [
    (300, "redirect"),
    (302, "redirect"),
    (305, "redirect"),
    (380, "not-acceptable"),
    (400, "bad-request"),
    (401, "not-authorized"),
    (402, "bad-request"),
    (403, "forbidden"),
    (404, "item-not-found"),
    (405, "feature-not-implemented"),
    (406, "not-acceptable"),
    (407, "registration-required"),
    (408, "remote-server-timeout"),
    (410, "gone"),
    (413, "policy-violation"),
    (414, "policy-violation"),
    (415, "not-acceptable"),
    (416, "not-acceptable"),
    (420, "feature-not-implemented"),
    (421, "not-acceptable"),
    (423, "resource-constraint"),
    (430, "recipient-unavailable"),
    (439, "feature-not-implemented"),
    (440, "policy-violation"),
    (480, "recipient-unavailable"),
    (481, "item-not-found"),
    (482, "not-acceptable"),
    (483, "not-acceptable"),
    (484, "item-not-found"),
    (485, "item-not-found"),
    (486, "recipient-unavailable"),
    (487, "recipient-unavailable"),
    (488, "not-acceptable"),
    (489, "policy-violation"),
    (491, "unexpected-request"),
    (493, "bad-request"),
    (500, "internal-server-error"),
    (501, "feature-not-implemented"),
    (502, "remote-server-not-found"),
    (503, "internal-server-error"),
    (504, "remote-server-timeout"),
    (505, "not-acceptable"),
    (513, "policy-violation"),
    (600, "recipient-unavailable"),
    (603, "recipient-unavailable"),
    (604, "item-not-found"),
    (606, "not-acceptable"),
]

# RFC 6120 §8.3.3 error types (DIGEST R6120-err).
ERROR_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "modify",
    "unexpected-request": "wait",
}


def test_all_22_rfc6120_conditions_are_covered() -> None:
    assert len(XMPP_CONDITIONS) == 22
    assert {row[0] for row in TABLE_2} == XMPP_CONDITIONS == set(ERROR_TYPES)


@pytest.mark.parametrize(("condition", "full", "bare"), TABLE_2)
def test_rfc7247_7_1_table_2(condition: str, full: int, bare: int) -> None:
    assert xmpp_to_sip(condition, full_jid=True).code == full
    assert xmpp_to_sip(condition, full_jid=False).code == bare


@pytest.mark.parametrize(("condition", "full", "bare"), TABLE_2)
def test_rfc7247_7_1_note_5_nothing_maps_to_503(condition: str, full: int, bare: int) -> None:
    assert 503 not in (full, bare)
    assert xmpp_to_sip(condition, full_jid=True).code != 503
    assert xmpp_to_sip(condition, full_jid=False).code != 503


def test_rfc7247_7_1_bare_full_split_is_4xx_vs_6xx() -> None:
    for condition in ("forbidden", "item-not-found", "not-acceptable", "recipient-unavailable"):
        assert xmpp_to_sip(condition, full_jid=True).code // 100 == 4
        assert xmpp_to_sip(condition, full_jid=False).code // 100 == 6


@pytest.mark.parametrize("full_jid", [True, False])
def test_rfc7247_7_1_note_3_gone_with_new_address_is_301(full_jid: bool) -> None:
    status = xmpp_to_sip("gone", full_jid=full_jid, new_address="xmpp:romeo@example.net")
    assert status == SipStatus(301, "Moved Permanently", "xmpp:romeo@example.net")
    bare = xmpp_to_sip("gone", full_jid=full_jid)
    assert bare == SipStatus(410, "Gone")


def test_redirect_carries_the_new_address_as_contact() -> None:
    status = xmpp_to_sip("redirect", full_jid=True, new_address="sip:a@b.example")
    assert (status.code, status.contact) == (302, "sip:a@b.example")


def test_xmpp_text_becomes_the_reason_phrase_on_one_line() -> None:
    status = xmpp_to_sip("forbidden", full_jid=True, text="go\r\naway")
    assert status == SipStatus(403, "go away")
    assert xmpp_to_sip("forbidden", full_jid=True).reason == "Forbidden"


def test_unknown_condition_is_a_bug() -> None:
    with pytest.raises(ValueError):
        xmpp_to_sip("payment-required", full_jid=True)  # removed in RFC 6120


@pytest.mark.parametrize(("code", "condition"), TABLE_3)
def test_rfc7247_7_2_table_3(code: int, condition: str) -> None:
    error = sip_to_xmpp(code)
    assert error.condition == condition
    assert error.type == ERROR_TYPES[condition]
    assert error.new_address is None


def test_table_3_has_no_extra_rows() -> None:
    assert {code for code, _ in TABLE_3} | {301} == set(SIP_TO_XMPP)


@pytest.mark.parametrize(
    ("code", "condition"),
    [
        (399, "redirect"),
        (418, "bad-request"),
        (499, "bad-request"),
        (422, "bad-request"),
        (599, "internal-server-error"),
        (580, "internal-server-error"),
        (699, "recipient-unavailable"),
        (607, "recipient-unavailable"),
    ],
)
def test_rfc7247_7_2_class_defaults_for_unlisted_codes(code: int, condition: str) -> None:
    assert sip_to_xmpp(code).condition == condition


def test_rfc7247_7_2_note_1_301_gone_carries_the_new_address() -> None:
    error = sip_to_xmpp(301, "Moved Permanently", new_address="sip:romeo@example.org")
    assert error == XmppErrorInfo("gone", "cancel", "Moved Permanently", "sip:romeo@example.org")


def test_rfc7247_7_2_note_1_410_gone_never_carries_an_address() -> None:
    assert sip_to_xmpp(410, new_address="sip:romeo@example.org").new_address is None


def test_301_without_an_address_falls_back_to_redirect() -> None:
    assert sip_to_xmpp(301).condition == "redirect"


def test_3xx_redirect_keeps_the_contact() -> None:
    assert sip_to_xmpp(302, new_address="sip:x@y.example").new_address == "sip:x@y.example"
    assert sip_to_xmpp(380, new_address="sip:x@y.example").new_address is None


def test_reason_phrase_becomes_text() -> None:
    assert sip_to_xmpp(486, "Busy Here").text == "Busy Here"


@pytest.mark.parametrize("code", [100, 180, 200, 202, 299, 700, 99])
def test_no_mapping_for_1xx_2xx_or_out_of_range(code: int) -> None:
    with pytest.raises(ValueError):
        sip_to_xmpp(code)


@pytest.mark.parametrize(("condition", "error_type"), sorted(ERROR_TYPES.items()))
def test_rfc6120_8_3_3_error_types(condition: str, error_type: str) -> None:
    assert xmpp_error_type(condition) == error_type
    assert XmppErrorInfo.of(condition).type == error_type


def test_xmpp_error_info_validates() -> None:
    with pytest.raises(ValueError):
        XmppErrorInfo("no-such-condition", "cancel")
    with pytest.raises(ValueError):
        XmppErrorInfo.of("forbidden", new_address="sip:a@b")  # only gone/redirect
    with pytest.raises(ValueError):
        XmppErrorInfo("forbidden", "sometimes")  # type: ignore[arg-type]


def test_sip_status_validates() -> None:
    with pytest.raises(ValueError):
        SipStatus(700, "Nope")
    with pytest.raises(ValueError):
        SipStatus(400, "Bad\r\nInjected: yes")
    with pytest.raises(ValueError):
        SipStatus(404, "Not Found", contact="sip:a@b")  # Contact only on 3xx


@pytest.mark.parametrize(
    ("code", "phrase"),
    [(200, "OK"), (481, "Call/Transaction Does Not Exist"), (489, "Bad Event"), (202, "Accepted")],
)
def test_reason_phrases(code: int, phrase: str) -> None:
    assert REASON_PHRASES[code] == phrase
    assert sip_status.REASON_PHRASES[code] == phrase  # the SIP core's table (RFC 3261 §21)
    assert reason_phrase(code) == phrase


def test_reason_phrase_class_fallback() -> None:
    assert reason_phrase(418) == "Request Failure"
    assert reason_phrase(599) == "Server Failure"


def test_mapping_error_carries_both_answers() -> None:
    err = MappingError("no such user", sip_status=404, xmpp_condition="item-not-found")
    assert err.to_sip() == SipStatus(404, "Not Found")
    assert err.to_xmpp() == XmppErrorInfo("item-not-found", "cancel", "no such user")
    with pytest.raises(ValueError):
        MappingError("x", sip_status=200, xmpp_condition="bad-request")
    with pytest.raises(ValueError):
        MappingError("x", sip_status=400, xmpp_condition="bogus")


# --- RFC 8048 §5.2 / RFC 6665 §4.1.2.2 subscription outcomes -----------------------------------


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, "ok"),
        (202, "ok"),  # RFC 6665 §8.3.1: treat 202 like 200
        (403, "permanent"),  # RFC 8048 §5.2 (R8048-06)
        (489, "permanent"),
        (603, "permanent"),
        (423, "transient-retry-min-expires"),
        (481, "transient-new-dialog"),
        *[(c, "terminated") for c in (404, 405, 410, 416, 480, 482, 483, 484, 485, 501, 604)],
        (408, "retry-later"),
        (500, "retry-later"),
        (503, "retry-later"),
        (486, "retry-later"),
        (302, "retry-later"),
        (401, "retry-later"),
    ],
)
def test_subscribe_response_outcome(code: int, outcome: str) -> None:
    assert subscribe_response_outcome(code) == outcome


def test_provisional_responses_have_no_outcome() -> None:
    with pytest.raises(ValueError):
        subscribe_response_outcome(180)


@pytest.mark.parametrize(
    ("code", "notice"),
    [
        (403, XmppNotice.UNSUBSCRIBED),
        (603, XmppNotice.UNSUBSCRIBED),
        (404, XmppNotice.UNSUBSCRIBED),  # DIGEST §7.3: like item-not-found
        (604, XmppNotice.UNSUBSCRIBED),
        (480, XmppNotice.UNAVAILABLE),
        (410, XmppNotice.UNAVAILABLE),
        (423, XmppNotice.NONE),
        (481, XmppNotice.NONE),
        (500, XmppNotice.NONE),
        (200, XmppNotice.NONE),
    ],
)
def test_refresh_failure_notice(code: int, notice: XmppNotice) -> None:
    assert refresh_failure_notice(code) is notice


# RFC 6665 §4.1.3 reason codes (DIGEST §7.1 R6665-09, §7.3).
@pytest.mark.parametrize(
    ("reason", "resubscribe", "notice"),
    [
        ("deactivated", Resubscribe.NOW, XmppNotice.NONE),
        ("probation", Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE),
        ("giveup", Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE),
        ("timeout", Resubscribe.IF_STILL_WANTED, XmppNotice.UNAVAILABLE),
        ("rejected", Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),
        ("noresource", Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),
        ("invariant", Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),
        ("Rejected", Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),  # tokens: case-insensitive
        (None, Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE),
        ("some-extension", Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE),
    ],
)
def test_termination_actions(
    reason: str | None, resubscribe: Resubscribe, notice: XmppNotice
) -> None:
    assert termination_action(reason) == TerminationAction(resubscribe, notice)


# --- subscription_end: the X2S policy over the SIP core's `Terminated` facts (DIGEST §7.3) ---

NOTIFY, RESPONSE, TIMER_N = (
    TerminationCause.NOTIFY,
    TerminationCause.RESPONSE,
    TerminationCause.TIMER_N,
)
NEVER, LATER = Resubscribe.NEVER, Resubscribe.AFTER_RETRY_AFTER


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
@pytest.mark.parametrize("established", [False, True])
def test_subscription_end_notify_reasons(reason: str | None, established: bool) -> None:
    want = termination_action(reason)
    honours = want.resubscribe is LATER  # retry-after only where it has semantics (§4.1.3)
    end = subscription_end(Terminated(NOTIFY, reason, retry_after=90, established=established))
    assert end == SubscriptionEnd(want.resubscribe, want.notice, 90 if honours else None)
    assert end.permanent is (want.resubscribe is NEVER)


@pytest.mark.parametrize("code", [403, 489, 603])
@pytest.mark.parametrize("established", [False, True])
def test_subscription_end_permanent_failures_r8048_06(code: int, established: bool) -> None:
    end = subscription_end(Terminated(RESPONSE, status=code, established=established))
    assert end == SubscriptionEnd(NEVER, XmppNotice.UNSUBSCRIBED) and end.permanent


@pytest.mark.parametrize(
    ("code", "established", "end"),
    [
        (404, True, SubscriptionEnd(NEVER, XmppNotice.UNSUBSCRIBED, 30)),
        (604, True, SubscriptionEnd(NEVER, XmppNotice.UNSUBSCRIBED, 30)),
        (480, True, SubscriptionEnd(LATER, XmppNotice.UNAVAILABLE, 30)),
        (501, True, SubscriptionEnd(LATER, XmppNotice.UNAVAILABLE, 30)),
        (480, False, SubscriptionEnd(LATER, XmppNotice.NONE, 30)),  # nothing was available
        (503, False, SubscriptionEnd(LATER, XmppNotice.NONE, 30)),
        (481, True, SubscriptionEnd(LATER, XmppNotice.NONE, 30)),
    ],
)
def test_subscription_end_failure_responses_r6665_07(
    code: int, established: bool, end: SubscriptionEnd
) -> None:
    ended = Terminated(RESPONSE, status=code, retry_after=30, established=established)
    assert subscription_end(ended) == end
    assert not end.permanent or end.notice is XmppNotice.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("ended", "end"),
    [
        (Terminated(TIMER_N), SubscriptionEnd(LATER, XmppNotice.NONE)),
        (Terminated(TIMER_N, established=True), SubscriptionEnd(LATER, XmppNotice.UNAVAILABLE)),
        (
            Terminated(TerminationCause.EXPIRED, established=True),
            SubscriptionEnd(Resubscribe.IF_STILL_WANTED, XmppNotice.UNAVAILABLE),
        ),
        # ended by us (Expires: 0): never again, nothing to say, whatever the cause said
        (
            Terminated(NOTIFY, "timeout", retry_after=9, established=True, unsubscribing=True),
            SubscriptionEnd(NEVER),
        ),
        (
            Terminated(RESPONSE, status=480, retry_after=9, unsubscribing=True),
            SubscriptionEnd(NEVER),
        ),
        (Terminated(TIMER_N, established=True, unsubscribing=True), SubscriptionEnd(NEVER)),
        (Terminated(TerminationCause.UNSUBSCRIBED, unsubscribing=True), SubscriptionEnd(NEVER)),
    ],
)
def test_subscription_end_other_causes(ended: Terminated, end: SubscriptionEnd) -> None:
    assert subscription_end(ended) == end
