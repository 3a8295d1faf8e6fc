"""Per-conversation chat-state gating (RFC 3994 §3.2-§4, XEP-0085 §5), pure: time is an input.

Towards SIP (`should_send`): an isComposing MESSAGE goes only to a peer that has shown
support (it sent isComposing, or listed the type in Accept), never again to a peer that
answered 415, 488 or 405 to one (R3994-04 MUST for 415; 488 and 405 say the same), at most
one ``active`` per refresh interval per conversation (R3994-02), and an ``idle`` only to end
an ``active`` (a content message ends it too: `content_sent`).

Towards XMPP (`should_forward`): repeated identical states are collapsed (X85-04: never two
identical standalone notifications in a row), so ``active`` refreshes become one
``<composing/>``.

Tables are bounded (least recently used entries are dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from mappings.iscomposing import CHAT_STATE_TO_ISCOMPOSING, MEDIA_TYPE, ComposingState
from mappings.model import ChatState

__all__ = ["REFUSING_STATUSES", "ChatStateGate"]

REFUSING_STATUSES: Final = frozenset({405, 415, 488})

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Lru(Generic[K, V]):
    limit: int
    data: OrderedDict[K, V] = field(default_factory=OrderedDict)

    def get(self, key: K) -> V | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.limit:
            self.data.popitem(last=False)


Conversation = tuple[str, str]  # (XMPP user, SIP peer), bare addresses as text


@dataclass
class ChatStateGate:
    refresh: float = 90.0  # seconds between two isComposing ``active`` to one conversation
    limit: int = 10_000
    _peers: _Lru[str, bool] = field(init=False)  # True: support seen; False: refused
    _sent: _Lru[Conversation, tuple[ComposingState, float]] = field(init=False)
    _forwarded: _Lru[Conversation, ChatState] = field(init=False)

    def __post_init__(self) -> None:
        self._peers = _Lru(self.limit)
        self._sent = _Lru(self.limit)
        self._forwarded = _Lru(self.limit)

    # -- what the SIP peer has shown ---------------------------------------------------------

    def saw_support(self, peer: str) -> None:
        """The peer sent an isComposing document (a later 415/488/405 still wins)."""
        if self._peers.get(peer) is not False:
            self._peers.put(peer, True)

    def saw_accept(self, peer: str, accept: Iterable[str]) -> None:
        """An Accept header from the peer; support when it lists isComposing."""
        if any(MEDIA_TYPE in value.lower() for value in accept):
            self.saw_support(peer)

    def answered(self, peer: str, status: int) -> None:
        """The final status the peer gave an isComposing MESSAGE."""
        if status in REFUSING_STATUSES:
            self._peers.put(peer, False)

    def supported(self, peer: str) -> bool:
        return self._peers.get(peer) is True

    def refused(self, peer: str) -> bool:
        return self._peers.get(peer) is False

    # -- XMPP -> SIP -----------------------------------------------------------------------

    def should_send(self, conversation: Conversation, state: ChatState, now: float) -> bool:
        """Whether to send `state` as isComposing now; records it when True."""
        if not self.supported(conversation[1]):
            return False
        mapped = CHAT_STATE_TO_ISCOMPOSING[state.value]
        if mapped is None:
            return False
        last = self._sent.get(conversation)
        if mapped == "active":
            if last is not None and last[0] == "active" and now - last[1] < self.refresh:
                return False
        elif last is None or last[0] == "idle":
            return False  # idle only ends an active
        self._sent.put(conversation, (mapped, now))
        return True

    def content_sent(self, conversation: Conversation, now: float) -> None:
        """A content message went out: the receiver is back to idle (RFC 3994 §3.2)."""
        if self._sent.get(conversation) is not None:
            self._sent.put(conversation, ("idle", now))

    # -- SIP -> XMPP -----------------------------------------------------------------------

    def should_forward(self, conversation: Conversation, state: ChatState) -> bool:
        """Whether a chat state from SIP reaches XMPP (no two identical in a row)."""
        if self._forwarded.get(conversation) is state:
            return False
        self._forwarded.put(conversation, state)
        return True

    def content_forwarded(self, conversation: Conversation) -> None:
        """A content message went to XMPP: it carries (or implies) ``active``."""
        self._forwarded.put(conversation, ChatState.ACTIVE)
