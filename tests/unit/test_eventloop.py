"""gateway.eventloop: `[runtime] event_loop` -> the loop factory (issue 27)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from gateway.eventloop import LoopChoiceError, loop_factory, loop_name

pytestmark = pytest.mark.unit

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_is_the_default_loop() -> None:
    assert loop_factory("asyncio") is None
    with asyncio.Runner() as runner:
        assert loop_name(runner.get_loop()) == "asyncio"


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed (the fast extra)")
@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_uvloop_when_installed(choice: str) -> None:
    factory = loop_factory(choice)
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        assert loop_name(runner.get_loop()) == "uvloop"
        assert runner.run(asyncio.sleep(0, "ran")) == "ran"


def test_uvloop_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert loop_factory("auto") is None
    with pytest.raises(LoopChoiceError, match="not installed"):
        loop_factory("uvloop")
