"""gateway.memo: the one bounded cache of the fast paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.memo import Memo, memoize

pytestmark = pytest.mark.unit


def test_get_builds_once_and_remembers() -> None:
    calls: list[str] = []
    memo: Memo[str, int] = Memo(8)

    def build(key: str) -> int:
        calls.append(key)
        return len(key)

    assert memo.get("abc", build) == 3
    assert memo.get("abc", build) == 3
    assert calls == ["abc"]
    assert memo.peek("abc") == 3
    assert memo.peek("zz") is None


def test_failures_are_not_remembered() -> None:
    calls = 0

    def build(key: str) -> int:
        nonlocal calls
        calls += 1
        raise ValueError(key)

    memo: Memo[str, int] = Memo(8)
    for _ in range(3):
        with pytest.raises(ValueError, match="bad"):
            memo.get("bad", build)
    assert calls == 3
    assert len(memo) == 0


def test_full_memo_is_forgotten_at_once() -> None:
    memo: Memo[int, int] = Memo(3)
    for i in range(3):
        memo.put(i, i)
    assert len(memo) == 3
    memo.put(1, 10)  # a known key does not empty it
    assert len(memo) == 3 and memo.peek(1) == 10
    memo.put(99, 99)
    assert len(memo) == 1 and 99 in memo and 0 not in memo


def test_peek_survives_clear() -> None:
    memo: Memo[str, str] = Memo(2)
    memo.put("a", "A")
    memo.clear()
    memo.put("b", "B")
    assert memo.peek("b") == "B" and memo.peek("a") is None


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Memo(0)


@given(st.lists(st.text(max_size=4), max_size=200), st.integers(1, 16))
def test_memoize_matches_the_function_and_stays_bounded(keys: list[str], limit: int) -> None:
    def f(text: str) -> str:
        if text.startswith("x"):
            raise KeyError(text)
        return text.upper() + "!"

    cached = memoize(limit)(f)
    for key in keys:
        try:
            want: str | None = f(key)
        except KeyError:
            want = None
        if want is None:
            with pytest.raises(KeyError):
                cached(key)
        else:
            assert cached(key) == want
        assert len(cached.memo) <= limit  # type: ignore[attr-defined]


def test_items_is_a_snapshot_of_what_is_remembered() -> None:
    memo: Memo[str, int] = Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    snapshot = memo.items()
    assert sorted(snapshot) == [("a", 1), ("b", 2)]
    memo.put("c", 3)  # full: emptied first, then "c"
    assert memo.items() == [("c", 3)]
    assert sorted(snapshot) == [("a", 1), ("b", 2)]  # the snapshot did not change
