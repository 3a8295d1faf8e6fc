"""The last N message fates, in memory (issue 26: the operator console's fate list).

The pager records every message's fate once, in `Pager._fate`, beside its metrics and its
INFO "message" line; that one call also appends a `Fate` here. The fast path stays cheap:
one plain tuple built and appended to a `deque(maxlen=N)` (old fates fall off the far end), and
three running totals the console turns into rates. No lock: the gateway's single event
loop is the only writer and reader. `[admin] console_fates` sets N (0: keep none, the
totals still count); docs/admin-api.md "Console".
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

DEFAULT_FATES = 1000
MAX_FATES = 100_000
# Fates that are not an error on either side (docs/pager.md "Logs and metrics"); the rest
# count as errors in the console's chart.
OK_FATES = frozenset({"delivered", "collapsed", "held", "ignored"})


class Fate(NamedTuple):
    """One message's end. `seq` orders fates across the ring's life; `at` is Unix time;
    `seconds` the handling time (the `cpim_message_handling_seconds` observation);
    `detail` the error condition or reason, when there was one."""

    seq: int
    at: float
    direction: str
    fate: str
    status: int | None
    sender: str | None
    recipient: str | None
    call_id: str | None
    stanza_id: str | None
    seconds: float
    detail: str | None


class Totals(NamedTuple):
    """Running totals since start: fates, errors among them, and their handling seconds."""

    messages: int
    errors: int
    seconds: float


class FateRing:
    """A bounded record of the last `limit` fates with running totals."""

    def __init__(self, limit: int = DEFAULT_FATES, wall: Callable[[], float] = time.time) -> None:
        # plain tuples in Fate's field order: a NamedTuple's constructor costs more than
        # the rest of `add` together; `newest_first` gives them their names
        self._items: deque[tuple[Any, ...]] = deque(maxlen=max(0, limit))
        self._wall = wall
        self.count = 0
        self.errors = 0
        self.seconds = 0.0

    @property
    def limit(self) -> int:
        return self._items.maxlen or 0

    def add(self, direction: str, fate: str, seconds: float, fields: Mapping[str, Any]) -> None:
        """Record one fate; `fields` are the fate line's (status, sender, recipient, ids)."""
        self.count += 1
        self.seconds += seconds
        if fate not in OK_FATES:
            self.errors += 1
        get = fields.get
        detail = get("condition") or get("reason")
        self._items.append(
            (
                self.count,
                self._wall(),
                direction,
                fate,
                get("status"),
                get("sender"),
                get("recipient"),
                get("call_id"),
                get("stanza_id"),
                seconds,
                None if detail is None else str(detail),
            )
        )

    def totals(self) -> Totals:
        return Totals(self.count, self.errors, self.seconds)

    def last_seq(self) -> int:
        return self.count

    def __len__(self) -> int:
        return len(self._items)

    def newest_first(self) -> Iterator[Fate]:
        return map(Fate._make, reversed(self._items))


class FateFilter(NamedTuple):
    """What the console asks for: None matches anything; `text` is a case-insensitive
    substring of the sender, the recipient or either id."""

    direction: str | None = None
    fate: str | None = None
    text: str | None = None

    def matches(self, f: Fate) -> bool:
        if self.direction is not None and f.direction != self.direction:
            return False
        if self.fate is not None and f.fate != self.fate:
            return False
        if self.text is None:
            return True
        needle = self.text.lower()
        return any(
            needle in v.lower() for v in (f.sender, f.recipient, f.call_id, f.stanza_id) if v
        )


def select(ring: FateRing, wanted: FateFilter, limit: int) -> list[Fate]:
    """At most `limit` fates matching `wanted`, newest first."""
    out: list[Fate] = []
    for f in ring.newest_first():
        if wanted.matches(f):
            out.append(f)
            if len(out) >= limit:
                break
    return out
