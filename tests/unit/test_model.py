"""The neutral model (RFC 3860 / RFC 3859 operations): validation and small behaviours."""

from __future__ import annotations

import dataclasses

import pytest

from mappings.errors import MappingError
from mappings.model import (
    CPIM_ID_LIMIT,
    DEFAULT_MAX_FORWARDS,
    Address,
    BodyPart,
    ChatState,
    MessageOp,
    MessageResponse,
    NotifyOp,
    ProbeOp,
    ResponseKind,
    ResponseStatus,
    Subject,
    SubscribeOp,
    SubscribeResponse,
    SubscriptionState,
    SubState,
    TooManyHops,
    UnsubscribeOp,
    XmppMessageType,
    fits_cpim_limit,
)

ROMEO = Address("romeo", "example.net", "dr4hcr0st3lup4c")
JULIET = Address("juliet", "example.com")


def message(**changes: object) -> MessageOp:
    base = MessageOp(ROMEO, JULIET, "t1", parts=(BodyPart.plain("Art thou not Romeo?"),))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# --- Address ------------------------------------------------------------------------------------


def test_address_domain_compares_case_insensitively() -> None:
    assert Address("romeo", "Example.NET") == Address("romeo", "example.net")
    assert hash(Address("romeo", "Example.NET")) == hash(Address("romeo", "example.net"))
    assert Address("Romeo", "example.net") != Address("romeo", "example.net")
    assert Address("romeo", "Example.NET").domain == "Example.NET"


def test_address_bare_drops_the_instance() -> None:
    assert ROMEO.bare == Address("romeo", "example.net")
    assert JULIET.bare is JULIET


@pytest.mark.parametrize(
    "args",
    [
        ("", "example.com", None),
        ("a\nb", "example.com", None),
        ("a", "", None),
        ("a", "example.com", ""),
        ("romeo", None, None),  # no domain: only a global number
        (None, None, None),
    ],
)
def test_invalid_addresses_cannot_be_built(args: tuple[str | None, str | None, str | None]) -> None:
    with pytest.raises(ValueError):
        Address(*args)


def test_number_without_domain() -> None:
    assert Address("+15551234567", None).domain is None


# --- MessageOp (RFC 3860 §3.1, DIGEST §23.1) ----------------------------------------------------


def test_message_defaults() -> None:
    op = message()
    assert op.max_forwards == DEFAULT_MAX_FORWARDS == 70
    assert op.text() == "Art thou not Romeo?"
    assert op.xmpp_type is None and op.chat_state is None


def test_forwarded_decrements_and_fails_at_zero() -> None:
    # RFC 3860 §3.4.2: decrement; a message received with MaxForwards 0 is discarded + failure.
    assert message(max_forwards=2).forwarded().max_forwards == 1
    with pytest.raises(TooManyHops) as info:
        message(max_forwards=0).forwarded()
    assert isinstance(info.value, MappingError)
    assert (info.value.sip_status, info.value.xmpp_condition) == (483, "not-acceptable")


@pytest.mark.parametrize(
    "changes",
    [
        {"trans_id": ""},
        {"max_forwards": -1},
        {"lang": "not a tag"},
        {"thread": ""},
        {"subjects": (Subject("a", "en"), Subject("b", "en"))},  # RFC 6121 §5.2.4
        {"parts": ()},  # nothing to carry
    ],
)
def test_invalid_messages_cannot_be_built(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        message(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"parts": (), "chat_state": ChatState.COMPOSING},
        {"parts": (), "receipt_for": "msg-1"},
        {"parts": (), "cpim_raw": b"From: <im:a@b>\r\n\r\nsigned"},
        {"parts": (), "subjects": (Subject("Hi", "cz"),)},
    ],
)
def test_messages_without_body_but_with_something_to_carry(changes: dict[str, object]) -> None:
    assert message(**changes).parts == ()


def test_message_carries_everything_rfc7572_restores() -> None:
    op = message(
        thread="call-id-1",
        lang="en",
        subjects=(Subject("Ahoj!", "cz"), Subject("Hi", None)),
        xmpp_type=XmppMessageType.CHAT,
        receipt_request=True,
        chat_state=ChatState.ACTIVE,
    )
    assert (op.thread, op.lang, op.xmpp_type) == ("call-id-1", "en", XmppMessageType.CHAT)
    assert [s.lang for s in op.subjects] == ["cz", None]


def test_long_transaction_ids_are_kept_verbatim() -> None:
    long_id = "x" * 100
    assert message(trans_id=long_id).trans_id == long_id
    assert not fits_cpim_limit(long_id)
    assert fits_cpim_limit("é" * (CPIM_ID_LIMIT // 2))
    assert not fits_cpim_limit("é" * (CPIM_ID_LIMIT // 2 + 1))


def test_text_only_decodes_utf8_compatible_plain_text() -> None:
    html = BodyPart("text/html", b"<p>hi</p>")
    latin = BodyPart("text/plain; charset=ISO-8859-1", "café".encode("latin-1"))
    ascii_part = BodyPart('Text/Plain; charset="US-ASCII"', b"hello")
    assert message(parts=(html,)).text() is None
    assert message(parts=(latin,)).text() is None  # RFC 3922 §4: other charsets not mapped
    assert message(parts=(html, ascii_part)).text() == "hello"


@pytest.mark.parametrize("content_type", ["", "text", "text/", "/plain", "text plain"])
def test_body_part_needs_a_media_type(content_type: str) -> None:
    with pytest.raises(ValueError):
        BodyPart(content_type, b"")


def test_body_part_media_type_is_normalised() -> None:
    assert BodyPart("Text/Plain ; charset=utf-8", b"").media_type == "text/plain"


# --- responses (RFC 3860 §3.4.1) ----------------------------------------------------------------


def test_response_status_kinds() -> None:
    assert ResponseStatus.success().kind is ResponseKind.SUCCESS
    assert ResponseStatus.indeterminate().kind is ResponseKind.INDETERMINATE
    failure = ResponseStatus.failure(404, "item-not-found", "no such user")
    assert (failure.sip_code, failure.xmpp_condition) == (404, "item-not-found")
    err = MappingError("busy", sip_status=486, xmpp_condition="recipient-unavailable")
    assert ResponseStatus.from_error(err) == ResponseStatus.failure(
        486, "recipient-unavailable", "busy"
    )


@pytest.mark.parametrize(
    "args",
    [
        (ResponseKind.FAILURE, None, None),  # a failure says why
        (ResponseKind.SUCCESS, 404, None),  # a success does not
        (ResponseKind.FAILURE, 200, None),
        (ResponseKind.FAILURE, None, "bogus-condition"),
    ],
)
def test_invalid_response_status(args: tuple[ResponseKind, int | None, str | None]) -> None:
    with pytest.raises(ValueError):
        ResponseStatus(*args)


def test_message_response_needs_the_trans_id() -> None:
    assert MessageResponse("t1", ResponseStatus.success()).trans_id == "t1"
    with pytest.raises(ValueError):
        MessageResponse("", ResponseStatus.success())


# --- presence (RFC 3859) ------------------------------------------------------------------------


def test_subscribe_unsubscribe_probe() -> None:
    sub = SubscribeOp(JULIET, ROMEO.bare, "dialog-1", duration=3600, trans_id="z9hG4bK1")
    assert sub.duration == 3600
    assert SubscribeOp(JULIET, ROMEO.bare, "dialog-1").duration is None  # XMPP: long-lived
    assert UnsubscribeOp(JULIET, ROMEO.bare, "dialog-1").subscript_id == "dialog-1"
    assert ProbeOp(JULIET, ROMEO.bare).trans_id is None


@pytest.mark.parametrize("duration", [0, -5])
def test_subscribe_duration_must_be_positive(duration: int) -> None:
    # RFC 3859 §3.1: duration 0 is cancel (same id) or fetch (new id): other operations here.
    with pytest.raises(ValueError):
        SubscribeOp(JULIET, ROMEO, "d", duration=duration)


def test_subscribe_needs_a_subscript_id() -> None:
    with pytest.raises(ValueError):
        SubscribeOp(JULIET, ROMEO, "")
    with pytest.raises(ValueError):
        UnsubscribeOp(JULIET, ROMEO, "")


@pytest.mark.parametrize(
    "state",
    [
        SubscriptionState(SubState.ACTIVE, expires=3600),
        SubscriptionState(SubState.PENDING, expires=0),
        SubscriptionState(SubState.TERMINATED, reason="timeout"),
        SubscriptionState(SubState.TERMINATED, reason="probation", retry_after=60),
        SubscriptionState(SubState.TERMINATED),
    ],
)
def test_valid_subscription_states(state: SubscriptionState) -> None:
    assert state.state in SubState


@pytest.mark.parametrize(
    "kwargs",
    [
        {"state": SubState.TERMINATED, "expires": 10},  # RFC 6665 §4.1.3: MUST ignore
        {"state": SubState.ACTIVE, "reason": "timeout"},  # reason only on terminated
        {"state": SubState.ACTIVE, "expires": -1},
        {"state": SubState.TERMINATED, "reason": "bad reason"},  # not a token
        {"state": SubState.TERMINATED, "retry_after": -1},
    ],
)
def test_invalid_subscription_states(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SubscriptionState(**kwargs)  # type: ignore[arg-type]


def test_notify_keeps_document_and_raw_body() -> None:
    body = b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:romeo@example.net'/>"
    doc = object()
    notify = NotifyOp(
        JULIET,
        ROMEO,
        document=doc,
        body=body,
        content_type="application/pidf+xml",
        state=SubscriptionState(SubState.ACTIVE, expires=3599),
    )
    assert notify.document is doc and notify.body == body
    assert NotifyOp(JULIET, ROMEO).document is None  # empty NOTIFY: unknown/closed


def test_notify_body_and_type_go_together() -> None:
    with pytest.raises(ValueError):
        NotifyOp(JULIET, ROMEO, body=b"x")
    with pytest.raises(ValueError):
        NotifyOp(JULIET, ROMEO, content_type="application/pidf+xml")


def test_subscribe_response() -> None:
    ok = SubscribeResponse(ResponseStatus.success(), "t", duration=1800)
    assert ok.duration == 1800
    with pytest.raises(ValueError):
        SubscribeResponse(ResponseStatus.failure(403), duration=10)


def test_events_are_frozen() -> None:
    op = message()
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.trans_id = "other"  # type: ignore[misc]


def test_chat_states_are_xep0085s_five() -> None:
    assert {s.value for s in ChatState} == {"active", "composing", "paused", "inactive", "gone"}
