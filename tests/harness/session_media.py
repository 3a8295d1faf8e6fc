"""A test-only `Media` for the INVITE leg (gateway/bridge/session/media.py).

It is NOT the gateway's media: the real one is built on gateway/sdp and the MSRP
transport (docs/sessions.md). sipp checks SIP, not media, so this double answers every
offer that has an `m=message` line with one fixed description, refuses anything else with
488 and warn-code 304, and records every call it gets. `hold` makes `answer` wait (a
CANCEL test needs an INVITE that stays unanswered).
"""

from __future__ import annotations

import asyncio

from gateway.bridge.session.media import Call, MediaAnswer, MediaRefusal

FIXED = (
    b"v=0\r\no=gateway 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=message 2855 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\n"
    b"a=path:msrp://127.0.0.1:2855/fixed;tcp\r\n"
)


class FixedMedia:
    def __init__(self) -> None:
        self.hold: asyncio.Event | None = None
        self.calls: list[tuple[str, Call, bytes | str]] = []
        self.changed = asyncio.Event()
        self.accept_answers = True

    def _note(self, what: str, call: Call, data: bytes | str = b"") -> None:
        self.calls.append((what, call, data))
        self.changed.set()

    def seen(self, what: str) -> list[Call]:
        return [c for w, c, _ in self.calls if w == what]

    async def wait_for(self, what: str, count: int = 1, timeout: float = 30.0) -> list[Call]:
        async def until() -> None:
            while len(self.seen(what)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.seen(what)

    async def answer(
        self, offer: bytes, content_type: str, call: Call
    ) -> MediaAnswer | MediaRefusal:
        self._note("answer", call, offer)
        if self.hold is not None:
            await self.hold.wait()
        if b"m=message" not in offer:
            return MediaRefusal(488, 304, "only message sessions")
        return MediaAnswer(FIXED)

    async def reoffer(self, offer: bytes, call: Call) -> MediaAnswer | MediaRefusal:
        self._note("reoffer", call, offer)
        if b"m=message" not in offer:
            return MediaRefusal(488, 304, "only message sessions")
        return MediaAnswer(FIXED.replace(b"1 1 IN", b"1 2 IN"))

    async def offer(self, call: Call) -> bytes:
        self._note("offer", call)
        return FIXED

    async def accepted(self, answer: bytes, call: Call) -> bool:
        self._note("accepted", call, answer)
        return self.accept_answers

    def started(self, call: Call) -> None:
        self._note("started", call)

    def ended(self, call: Call, reason: str) -> None:
        self._note("ended", call, reason)
