"""The pure cores import no I/O (STYLE.md): mappings/, gateway/sip/ minus transport/, and
the bounded-cache helper gateway/memo.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "asyncio",
    "socket",
    "slixmpp",
    "aiohttp",
    "dns",
    "ssl",
    "selectors",
    "gateway.sip.transport",
    "gateway.xmpp",
    "gateway.admin",
    "gateway.store",
    "gateway.app",
    "gateway.bridge",
)


def _pure_modules() -> list[Path]:
    mods = sorted((ROOT / "mappings").rglob("*.py"))
    sip = ROOT / "gateway" / "sip"
    mods += sorted(p for p in sip.rglob("*.py") if "transport" not in p.relative_to(sip).parts)
    mods.append(ROOT / "gateway" / "memo.py")
    return mods


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_there_are_pure_modules() -> None:
    assert len(_pure_modules()) >= 2


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = {n for n in _imports(path) for f in FORBIDDEN if n == f or n.startswith(f + ".")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
