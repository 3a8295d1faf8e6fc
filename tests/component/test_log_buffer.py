"""gateway.logs.BufferedStreamHandler: the same text as logging.StreamHandler, only batched.

The equivalence test feeds the same records, some logged inside a running event loop and
some outside, to a plain StreamHandler and to the buffered one; once the buffered handler
is flushed (as ``logging.shutdown`` does at exit) both streams must hold the same text.
"""

from __future__ import annotations

import asyncio
import io
import logging
import weakref

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.logs import BufferedStreamHandler, JsonFormatter, TextFormatter

LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


def _record(i: int, level: int, msg: str, fields: dict[str, object]) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.bridge.pager", level, __file__, 1, msg, None, None)
    rec.created = 1_795_000_000 + i * 0.37  # fixed clock: both handlers see one record
    rec.msecs = (rec.created % 1) * 1000
    rec.fields = fields
    return rec


_entries = st.lists(
    st.tuples(
        st.sampled_from(LEVELS),
        st.text(max_size=20),
        st.dictionaries(
            st.sampled_from(["fate", "status", "call_id", "msg"]),
            st.one_of(st.integers(), st.text(max_size=10)),
            max_size=3,
        ),
        st.booleans(),  # logged inside the running loop
        st.booleans(),  # yield to the loop after it
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(entries=_entries, json_fmt=st.booleans(), limit=st.integers(1, 8))
def test_same_text_as_stream_handler(
    entries: list[tuple[int, str, dict[str, object], bool, bool]], json_fmt: bool, limit: int
) -> None:
    plain_out, buf_out = io.StringIO(), io.StringIO()
    plain = logging.StreamHandler(plain_out)
    buffered = BufferedStreamHandler(buf_out, delay=0.0, limit=limit)
    for h in (plain, buffered):
        h.setFormatter(JsonFormatter() if json_fmt else TextFormatter())
    records = [_record(i, *e[:3]) for i, e in enumerate(entries)]

    async def inside(chunk: list[tuple[logging.LogRecord, bool]]) -> None:
        for rec, yield_after in chunk:
            plain.handle(rec)
            buffered.handle(rec)
            if yield_after:
                await asyncio.sleep(0)

    i = 0
    while i < len(entries):
        if entries[i][3]:  # a run of records logged inside one event loop
            chunk = []
            while i < len(entries) and entries[i][3]:
                chunk.append((records[i], entries[i][4]))
                i += 1
            asyncio.run(inside(chunk))
        else:
            plain.handle(records[i])
            buffered.handle(records[i])
            i += 1
    logging.shutdown([weakref.ref(buffered)])  # what the interpreter does at exit
    assert buf_out.getvalue() == plain_out.getvalue()


def _handler(limit: int = 100) -> tuple[io.StringIO, BufferedStreamHandler]:
    out = io.StringIO()
    h = BufferedStreamHandler(out, delay=0.0, limit=limit)
    h.setFormatter(TextFormatter())
    return out, h


def test_info_waits_for_the_loop_warning_writes_everything_at_once() -> None:
    out, h = _handler()

    async def main() -> None:
        h.handle(_record(0, logging.INFO, "message", {"fate": "delivered"}))
        h.handle(_record(1, logging.INFO, "message", {"fate": "rejected"}))
        assert out.getvalue() == ""  # buffered until the loop turns
        h.handle(_record(2, logging.WARNING, "link down", {}))
        lines = out.getvalue().splitlines()
        assert [ln.split(" ", 1)[1] for ln in lines] == [
            "INFO gateway.bridge.pager: message fate=delivered",
            "INFO gateway.bridge.pager: message fate=rejected",
            "WARNING gateway.bridge.pager: link down",
        ]
        h.handle(_record(3, logging.INFO, "message", {"fate": "held"}))
        for _ in range(3):
            await asyncio.sleep(0)  # the zero-delay timer runs on a later turn
        assert out.getvalue().splitlines()[-1].endswith("message fate=held")

    asyncio.run(main())


def test_limit_writes_a_full_batch_and_outside_a_loop_nothing_waits() -> None:
    out, h = _handler(limit=3)

    async def main() -> None:
        for i in range(3):
            h.handle(_record(i, logging.INFO, f"m{i}", {}))
        assert len(out.getvalue().splitlines()) == 3

    asyncio.run(main())
    h.handle(_record(9, logging.DEBUG, "outside", {}))
    assert out.getvalue().splitlines()[-1].endswith("outside")


def test_lines_left_by_an_ended_loop_come_before_the_next_loops_lines() -> None:
    out, h = _handler()

    async def first() -> None:
        h.handle(_record(0, logging.INFO, "first", {}))

    async def second() -> None:
        h.handle(_record(1, logging.INFO, "second", {}))

    asyncio.run(first())  # ends before the timer fires
    asyncio.run(second())
    h.flush()
    assert [ln.rsplit(" ", 1)[1] for ln in out.getvalue().splitlines()] == ["first", "second"]
