"""No code reaches into a library's private attributes (issue 25).

slixmpp's name-mangled XMLStream lists (`_XMLStream__handlers`, ...), its stanza factory
(`_build_stanza`) and ElementTree's pull-parser internals (`_events_queue`, `_parser`,
`_setevents`) change without notice between releases. Read through the AST: attribute
accesses, and strings naming such attributes (getattr/hasattr). `self._parser` of our own
classes is ours.

gateway/ and mappings/ get the whole check; tests/ and bench/ the library names only
(`_parser` there is mostly our own `mappings.xmlsafe._parser`, which a test may call).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("gateway", "mappings") for p in (ROOT / d).rglob("*.py"))
TEST_SOURCES = sorted(
    p
    for d in ("tests", "bench")
    for p in (ROOT / d).rglob("*.py")
    if p.name != Path(__file__).name  # this file names the privates on purpose
)

# a name-mangled private of another class (`_XMLStream__handlers`, `_Foo__bar`)
_MANGLED = re.compile(r"^_[A-Za-z]\w*?__\w+$")
# ElementTree's XMLPullParser / XMLParser privates: never ours, even through `self` (a
# subclass of XMLPullParser inherits them); `_parser` is a common name of our own
_ETREE_PRIVATE = frozenset({"_events_queue", "_setevents"})
# slixmpp's XMLStream privates with a plain (not mangled) name
_SLIXMPP_PRIVATE = frozenset({"_build_stanza"})
_LIBRARY_PRIVATE = _ETREE_PRIVATE | _SLIXMPP_PRIVATE
_ETREE_FOREIGN = frozenset({"_parser"})


def _offences(tree: ast.AST, *, foreign_parser: bool = True) -> list[str]:
    """Accesses to library privates; `foreign_parser`: also `._parser` of other objects."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if name.startswith("_XMLStream") or _MANGLED.match(name) or name in _LIBRARY_PRIVATE:
                found.append(f"{node.lineno}: .{name}")
            elif foreign_parser and name in _ETREE_FOREIGN and not own:
                found.append(f"{node.lineno}: .{name} of a foreign object")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if (
                text.startswith("_XMLStream")
                or (_MANGLED.match(text) and "__" in text[1:])
                or text in _SLIXMPP_PRIVATE
            ):
                found.append(f"{node.lineno}: {text!r}")
    return found


def test_sources_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert "gateway/xmpp/component.py" in names and "gateway/xmpp/streamparser.py" in names
    tests = {p.relative_to(ROOT).as_posix() for p in TEST_SOURCES}
    assert "tests/component/test_jid_check_memo.py" in tests
    assert "bench/hotpath_bench.py" in tests


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_private_attribute_of_a_library(path: Path) -> None:
    offences = _offences(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    assert offences == [], f"{path.relative_to(ROOT)}: {offences}"


@pytest.mark.parametrize("path", TEST_SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_library_private_in_tests_or_benchmarks(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offences = _offences(tree, foreign_parser=False)
    assert offences == [], f"{path.relative_to(ROOT)}: {offences}"


@pytest.mark.parametrize(
    "code",
    [
        "h = stream._XMLStream__handlers",
        "getattr(stream, '_XMLStream__filters')",
        "q = parser._events_queue",
        "q = self._events_queue",
        "p._setevents(q, ('start', 'end'))",
        "x = pull._parser",
        "s = comp._build_stanza(el)",
        "getattr(comp, '_build_stanza')(el)",
    ],
)
def test_the_check_catches(code: str) -> None:
    assert _offences(ast.parse(code))
