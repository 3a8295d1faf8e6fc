"""The offline queue's policy, pure (docs/offline.md): time is an argument, answers are
frozen dataclasses. It imports nothing but the standard library.

- `admit`: a new message joins a user's queue unless the queue (its `Usage`: messages
  and bytes stored) would then exceed the per-user quota: `OverQuota` with the text the
  sender is shown. `Usage.add`/`remove` keep the count as messages come and go.
- `split_expired`: messages whose `expires_at` is reached leave the queue undelivered.
- `after_attempt`: what one delivery attempt of the queue's head means. A 2xx is
  `Delivered` (the message is removed only then: at-least-once); no binding left is
  `Wait` (until the next registration); 408, 480, 5xx, a timeout or a transport failure
  is `Retry` at `now + backoff(attempt)` while the user is registered; any other final
  response is `Rejected` (the sender gets the mapped error, the next message goes on).
  The head blocks the messages behind it, so the order of storing is the order of
  delivery (RFC 3428 §8: one outstanding MESSAGE per destination).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = [
    "Admitted",
    "Delivered",
    "OverQuota",
    "QueuePolicy",
    "Queued",
    "Rejected",
    "Retry",
    "Usage",
    "Wait",
    "admit",
    "after_attempt",
    "backoff",
    "split_expired",
]


class Queued(Protocol):
    """What the policy reads of a stored message."""

    @property
    def size(self) -> int: ...

    @property
    def expires_at(self) -> float: ...


Q = TypeVar("Q", bound=Queued)


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    max_messages: int = 100
    max_bytes: int = 1_048_576
    max_age: float = 604_800.0
    retry_min: float = 5.0
    retry_max: float = 300.0


@dataclass(frozen=True, slots=True)
class Admitted:
    expires_at: float


@dataclass(frozen=True, slots=True)
class OverQuota:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """What one user's queue holds."""

    count: int = 0
    bytes: int = 0

    @classmethod
    def of(cls, queue: Sequence[Queued]) -> Usage:
        return cls(len(queue), sum(m.size for m in queue))

    def add(self, size: int) -> Usage:
        return Usage(self.count + 1, self.bytes + size)

    def remove(self, size: int) -> Usage:
        return Usage(max(0, self.count - 1), max(0, self.bytes - size))


def admit(policy: QueuePolicy, usage: Usage, size: int, now: float) -> Admitted | OverQuota:
    """May a message of `size` bytes join a queue holding `usage` at `now`?"""
    if usage.count + 1 > policy.max_messages:
        return OverQuota(f"offline message quota reached ({policy.max_messages} messages)")
    if usage.bytes + size > policy.max_bytes:
        return OverQuota(f"offline storage quota reached ({policy.max_bytes} bytes)")
    return Admitted(now + policy.max_age)


def split_expired(queue: Sequence[Q], now: float) -> tuple[tuple[Q, ...], tuple[Q, ...]]:
    """(live, expired), each in queue order; a message expires at its `expires_at`."""
    live = tuple(m for m in queue if m.expires_at > now)
    gone = tuple(m for m in queue if m.expires_at <= now)
    return live, gone


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    """No device left: keep the message until a registration."""


@dataclass(frozen=True, slots=True)
class Retry:
    at: float


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int


Outcome = Delivered | Wait | Retry | Rejected


def backoff(policy: QueuePolicy, attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, ...): doubling from retry_min, capped."""
    return float(min(policy.retry_max, policy.retry_min * 2.0 ** min(max(attempt - 1, 0), 32)))


def after_attempt(
    policy: QueuePolicy, status: int | None, *, no_binding: bool, attempt: int, now: float
) -> Outcome:
    """The meaning of attempt number `attempt` of the head: `status` is the final response
    (None: timeout or transport failure), `no_binding` that nothing was registered."""
    if no_binding:
        return Wait()
    if status is not None and 200 <= status < 300:
        return Delivered()
    if status is None or status in (408, 480) or 500 <= status < 600:
        return Retry(now + backoff(policy, attempt))
    return Rejected(status)
