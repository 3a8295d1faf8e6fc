"""Rate control of list NOTIFYs (gateway/bridge/lists/rate.py): RFC 6446 §5 max-rate and
the RLS's own minimum interval (RFC 4662 §4.8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.bridge.lists.rate import (
    MAX_RATE,
    due,
    max_rate_of,
    notify_interval,
    reflected_max_rate,
)
from gateway.sip.headers import parse_event


def test_max_rate_parameter_follows_the_grammar() -> None:
    assert max_rate_of(parse_event("presence;max-rate=0.5")) == 0.5
    assert max_rate_of(parse_event("presence;max-rate=10")) == 10.0
    assert max_rate_of(parse_event("presence")) is None
    for bad in ("0", "100", "1e3", "-1", "0.00000000001", "abc"):
        assert max_rate_of(parse_event(f"presence;max-rate={bad}")) is None, bad


def test_interval_is_the_larger_of_policy_and_max_rate_capped_by_expiry() -> None:
    assert notify_interval(5.0, None, 3600) == 5.0
    assert notify_interval(5.0, 0.1, 3600) == 10.0  # subscriber asks for less often
    assert notify_interval(5.0, 10.0, 3600) == 5.0  # local policy still holds (§5.2)
    # §5.3: a rate allowing no NOTIFY before expiry is raised to 1/remaining
    assert notify_interval(5.0, 0.0001, 600) == 600
    assert notify_interval(0.0, None, 600) == 0.0


def test_due() -> None:
    assert due(100.0, 5.0, 105.0) is None
    assert due(100.0, 5.0, 104.0) == 105.0
    assert due(float("-inf"), 5.0, 0.0) is None


@given(st.floats(min_value=0.0100000001, max_value=1e9))
def test_reflected_max_rate_is_in_the_grammar_and_not_above_the_interval(interval: float) -> None:
    text = reflected_max_rate(interval)
    assert text is not None and MAX_RATE.fullmatch(text)
    assert float(text) > 0
    # reflected rate never promises more NOTIFYs than the interval allows (+ rounding)
    assert float(text) <= 1.0 / interval + 1e-10 or float(text) == 1e-10


def test_no_pacing_reflects_nothing() -> None:
    assert reflected_max_rate(0.0) is None
