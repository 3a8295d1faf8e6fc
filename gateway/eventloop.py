"""Which asyncio event loop runs the gateway (`[runtime] event_loop`, issue 27).

uvloop (the optional `fast` extra) is a drop-in asyncio loop on libuv; the gateway uses
only the asyncio API, so both loops run the same code (the suite runs under both).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

__all__ = ["LoopChoiceError", "loop_factory", "loop_name"]


class LoopChoiceError(Exception):
    """`event_loop = "uvloop"` but uvloop is not installed."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for `asyncio.Runner` (None: asyncio's default loop). "auto" takes
    uvloop when it is installed; "uvloop" requires it; "asyncio" never uses it."""
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise LoopChoiceError(
                'runtime.event_loop = "uvloop" but uvloop is not installed '
                "(pip install 'cpim-gateway[fast]')"
            )
        return None
    import uvloop

    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """ "uvloop" or "asyncio", for the start-up line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
