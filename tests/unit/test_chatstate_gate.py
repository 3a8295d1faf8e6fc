"""gateway.bridge.pager.chatstate: isComposing gating (RFC 3994 §3.2-§4) and collapsing (X85-04)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge.pager.chatstate import REFUSING_STATUSES, ChatStateGate
from mappings.model import ChatState

PEER = "romeo@sip.example.org"
CONV = ("juliet@example.com", PEER)


def test_nothing_to_a_peer_without_shown_support() -> None:
    gate = ChatStateGate()
    assert not gate.should_send(CONV, ChatState.COMPOSING, 0.0)


def test_support_from_a_received_document_or_accept() -> None:
    gate = ChatStateGate()
    gate.saw_accept(PEER, ["text/plain, text/html"])
    assert not gate.supported(PEER)
    gate.saw_accept(PEER, ["text/plain, application/im-iscomposing+xml"])
    assert gate.supported(PEER)
    other = ChatStateGate()
    other.saw_support(PEER)
    assert other.should_send(CONV, ChatState.COMPOSING, 0.0)


def test_at_most_one_active_per_refresh_interval() -> None:
    gate = ChatStateGate(refresh=90.0)
    gate.saw_support(PEER)
    assert gate.should_send(CONV, ChatState.COMPOSING, 0.0)
    assert not gate.should_send(CONV, ChatState.COMPOSING, 89.9)
    assert gate.should_send(CONV, ChatState.COMPOSING, 90.0)
    # another conversation with the same peer has its own interval
    assert gate.should_send(("nurse@example.com", PEER), ChatState.COMPOSING, 1.0)


def test_idle_only_ends_an_active() -> None:
    gate = ChatStateGate()
    gate.saw_support(PEER)
    assert not gate.should_send(CONV, ChatState.PAUSED, 0.0)
    assert gate.should_send(CONV, ChatState.COMPOSING, 1.0)
    assert gate.should_send(CONV, ChatState.PAUSED, 2.0)
    assert not gate.should_send(CONV, ChatState.INACTIVE, 3.0)  # already idle


def test_content_message_ends_composing() -> None:
    gate = ChatStateGate()
    gate.saw_support(PEER)
    assert gate.should_send(CONV, ChatState.COMPOSING, 0.0)
    gate.content_sent(CONV, 1.0)
    assert not gate.should_send(CONV, ChatState.ACTIVE, 2.0)  # nothing to end
    assert gate.should_send(CONV, ChatState.COMPOSING, 3.0)  # a new composing is news


def test_gone_is_never_sent_in_pager_mode() -> None:
    gate = ChatStateGate()
    gate.saw_support(PEER)
    assert gate.should_send(CONV, ChatState.COMPOSING, 0.0)
    assert not gate.should_send(CONV, ChatState.GONE, 1.0)


@pytest.mark.parametrize("status", sorted(REFUSING_STATUSES))
def test_refusal_bans_the_peer_for_good(status: int) -> None:
    gate = ChatStateGate()
    gate.saw_support(PEER)
    gate.answered(PEER, status)
    assert gate.refused(PEER)
    gate.saw_support(PEER)  # a later isComposing from it does not lift the ban
    assert not gate.should_send(CONV, ChatState.COMPOSING, 1000.0)


@pytest.mark.parametrize("status", [200, 202, 404, 408, 480, 500, 503])
def test_other_answers_do_not_ban(status: int) -> None:
    gate = ChatStateGate()
    gate.saw_support(PEER)
    gate.answered(PEER, status)
    assert gate.should_send(CONV, ChatState.COMPOSING, 0.0)


def test_towards_xmpp_identical_states_collapse() -> None:
    gate = ChatStateGate()
    assert gate.should_forward(CONV, ChatState.COMPOSING)
    assert not gate.should_forward(CONV, ChatState.COMPOSING)
    assert gate.should_forward(CONV, ChatState.ACTIVE)
    assert gate.should_forward(CONV, ChatState.COMPOSING)
    gate.content_forwarded(CONV)
    assert not gate.should_forward(CONV, ChatState.ACTIVE)


def test_tables_are_bounded() -> None:
    gate = ChatStateGate(limit=10)
    for n in range(100):
        gate.saw_support(f"u{n}@example.org")
    assert not gate.supported("u0@example.org")
    assert gate.supported("u99@example.org")


states = st.sampled_from(list(ChatState))


@settings(max_examples=200)
@given(st.lists(st.tuples(states, st.floats(0, 10)), max_size=40))
def test_refreshes_spaced_and_idle_only_after_active(events: list[tuple[ChatState, float]]) -> None:
    """Two ``active`` in a row are at least a refresh interval apart (a repeated state is
    a refresh); an ``idle`` is only ever sent right after an ``active``."""
    gate = ChatStateGate(refresh=30.0)
    gate.saw_support(PEER)
    now = 0.0
    sent: list[tuple[str, float]] = []
    for state, step in events:
        now += step
        if gate.should_send(CONV, state, now):
            sent.append(("active" if state is ChatState.COMPOSING else "idle", now))
    for (prev, t0), (cur, t1) in itertools.pairwise(sent):
        if prev == cur == "active":
            assert t1 - t0 >= 30.0
        assert not (prev == cur == "idle")
    assert not sent or sent[0][0] == "active"
