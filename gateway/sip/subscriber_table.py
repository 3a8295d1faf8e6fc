"""RFC 6665 §4.1.2 subscriber transitions as data (the machine is `gateway.sip.subscriber`).

`TRANSITIONS[(state, input)] -> (next state, action kinds)`, h11 style; a missing row means
the input is absorbed. `Do` names what the machine does on a transition, in order.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

__all__ = ["OUTCOME_INPUTS", "SUBSTATE_INPUTS", "TRANSITIONS", "Do", "SubInput", "SubState"]


class SubState(enum.Enum):
    INIT = "init"
    NOTIFY_WAIT = "notify_wait"
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


class SubInput(enum.Enum):
    SUBSCRIBE = "subscribe"
    REFRESH_DUE = "refresh-due"
    UNSUBSCRIBE = "unsubscribe"
    OK = "2xx"  # 202 is a 200 (RFC 6665 §8.3.1)
    PERMANENT = "permanent"  # 403 / 489 / 603 (RFC 8048 §5.2)
    MIN_EXPIRES = "423"
    NEW_DIALOG = "481"
    FAILED = "failed"  # RFC 6665 §4.1.2.2 list: the subscription is terminated
    RETRY_LATER = "retry-later"  # anything else: still valid until it expires
    NOTIFY_ACTIVE = "notify-active"
    NOTIFY_PENDING = "notify-pending"
    NOTIFY_TERMINATED = "notify-terminated"
    NOTIFY_OTHER = "notify-extension-state"  # unknown substate: answered, ignored
    TIMER_N = "timer-n"
    EXPIRED = "expired"


# ---------------------------------------------------------------------------- the table


class Do(enum.Enum):
    SEND_INITIAL = "send-initial"  # out of dialog, same Call-ID/From tag, next CSeq
    SEND_NEW_DIALOG = "send-new-dialog"  # out of dialog, fresh Call-ID and From tag
    SEND_REFRESH = "send-refresh"
    SEND_UNSUBSCRIBE = "send-unsubscribe"  # Expires: 0 (RFC 6665 §4.1.2.3)
    SEND_MIN_EXPIRES = "send-min-expires"  # resend with Min-Expires (RFC 3261 §21.4.17)
    NOTE_EXPIRES = "note-expires"  # Expires of the 2xx (RFC 6665 §4.1.2.1)
    ANSWER_200 = "200"
    ANSWER_481 = "481"
    STOP_N = "stop-n"
    AUTHORIZED = "authorized"
    PENDING = "pending"
    DOCUMENT = "document"
    SCHEDULE = "schedule"  # expires param is authoritative (RFC 6665 §4.1.3)
    TERMINATE = "terminate"


S, I = SubState, SubInput  # noqa: E741
_LIVE = (S.PENDING, S.ACTIVE)
_NOTIFY_ANY = (I.NOTIFY_ACTIVE, I.NOTIFY_PENDING, I.NOTIFY_TERMINATED, I.NOTIFY_OTHER)
_ENDED = (Do.ANSWER_200, Do.STOP_N, Do.TERMINATE)

_rows: dict[tuple[SubState, SubInput], tuple[SubState, tuple[Do, ...]]] = {
    (S.INIT, I.SUBSCRIBE): (S.NOTIFY_WAIT, (Do.SEND_INITIAL,)),
    (S.TERMINATED, I.SUBSCRIBE): (S.NOTIFY_WAIT, (Do.SEND_NEW_DIALOG,)),
    (S.INIT, I.UNSUBSCRIBE): (S.TERMINATED, ()),
    (S.NOTIFY_WAIT, I.UNSUBSCRIBE): (S.TERMINATED, (Do.TERMINATE,)),
    # -- responses to the initial SUBSCRIBE
    (S.NOTIFY_WAIT, I.OK): (S.NOTIFY_WAIT, (Do.NOTE_EXPIRES,)),
    (S.NOTIFY_WAIT, I.MIN_EXPIRES): (S.NOTIFY_WAIT, (Do.SEND_MIN_EXPIRES,)),
    **{
        (S.NOTIFY_WAIT, i): (S.TERMINATED, (Do.STOP_N, Do.TERMINATE))
        for i in (I.PERMANENT, I.NEW_DIALOG, I.FAILED, I.RETRY_LATER)
    },
    # -- NOTIFY creating the subscription (RFC 6665 §4.1.2.4)
    (S.NOTIFY_WAIT, I.NOTIFY_ACTIVE): (
        S.ACTIVE,
        (Do.ANSWER_200, Do.STOP_N, Do.SCHEDULE, Do.AUTHORIZED, Do.DOCUMENT),
    ),
    (S.NOTIFY_WAIT, I.NOTIFY_PENDING): (
        S.PENDING,
        (Do.ANSWER_200, Do.STOP_N, Do.SCHEDULE, Do.PENDING),
    ),
    (S.NOTIFY_WAIT, I.NOTIFY_TERMINATED): (S.TERMINATED, _ENDED),
    (S.NOTIFY_WAIT, I.NOTIFY_OTHER): (S.NOTIFY_WAIT, (Do.ANSWER_200,)),
    (S.NOTIFY_WAIT, I.TIMER_N): (S.TERMINATED, (Do.TERMINATE,)),
    # -- an established subscription
    (S.PENDING, I.NOTIFY_ACTIVE): (
        S.ACTIVE,
        (Do.ANSWER_200, Do.STOP_N, Do.SCHEDULE, Do.AUTHORIZED, Do.DOCUMENT),
    ),
    (S.PENDING, I.NOTIFY_PENDING): (S.PENDING, (Do.ANSWER_200, Do.STOP_N, Do.SCHEDULE)),
    (S.ACTIVE, I.NOTIFY_ACTIVE): (S.ACTIVE, (Do.ANSWER_200, Do.STOP_N, Do.SCHEDULE, Do.DOCUMENT)),
    (S.ACTIVE, I.NOTIFY_PENDING): (
        S.PENDING,
        (Do.ANSWER_200, Do.STOP_N, Do.SCHEDULE, Do.PENDING),
    ),
    (S.PENDING, I.NOTIFY_TERMINATED): (S.TERMINATED, _ENDED),
    (S.ACTIVE, I.NOTIFY_TERMINATED): (S.TERMINATED, (Do.DOCUMENT, *_ENDED)),
    **{
        (s, i): (s, row)
        for s in _LIVE
        for i, row in (
            (I.NOTIFY_OTHER, (Do.ANSWER_200,)),
            (I.REFRESH_DUE, (Do.SEND_REFRESH,)),
            (I.UNSUBSCRIBE, (Do.SEND_UNSUBSCRIBE,)),
            (I.OK, (Do.NOTE_EXPIRES,)),
            (I.MIN_EXPIRES, (Do.SEND_MIN_EXPIRES,)),
            (I.RETRY_LATER, (Do.STOP_N,)),  # valid until the known expiry (§4.1.2.2)
        )
    },
    **{
        (s, i): (S.TERMINATED, (Do.STOP_N, Do.TERMINATE))
        for s in _LIVE
        for i in (I.PERMANENT, I.FAILED, I.TIMER_N, I.EXPIRED)
    },
    # 481 to a refresh: transient, re-subscribe on a new dialog (RFC 8048 §5.2, R6665-07)
    **{(s, I.NEW_DIALOG): (S.NOTIFY_WAIT, (Do.SEND_NEW_DIALOG,)) for s in _LIVE},
    # no subscription (yet / any more): RFC 6665 §4.1.2.4, §4.1.3
    **{(s, i): (s, (Do.ANSWER_481,)) for s in (S.INIT, S.TERMINATED) for i in _NOTIFY_ANY},
}
TRANSITIONS = MappingProxyType(_rows)
del S, I


SUBSTATE_INPUTS = MappingProxyType(
    {
        "active": SubInput.NOTIFY_ACTIVE,
        "pending": SubInput.NOTIFY_PENDING,
        "terminated": SubInput.NOTIFY_TERMINATED,
    }
)
OUTCOME_INPUTS = MappingProxyType(
    {
        "ok": SubInput.OK,
        "permanent": SubInput.PERMANENT,
        "transient-retry-min-expires": SubInput.MIN_EXPIRES,
        "transient-new-dialog": SubInput.NEW_DIALOG,
        "terminated": SubInput.FAILED,
        "retry-later": SubInput.RETRY_LATER,
    }
)
