"""The pure cores import no I/O (STYLE.md): mappings/, gateway/sip/ minus transport/, and
the bounded-cache helper gateway/memo.py. Domain code (gateway/bridge/, gateway/registrar/)
imports the SIP contract from the pure core, never from gateway.sip.transport."""

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


def _domain_modules() -> list[Path]:
    gw = ROOT / "gateway"
    return sorted([*(gw / "bridge").rglob("*.py"), *(gw / "registrar").rglob("*.py")])


@pytest.mark.parametrize("path", _domain_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_code_imports_no_sip_transport(path: Path) -> None:
    """The aioquic split (STYLE.md): the bridge and the registrar talk to the pure contract
    in gateway.sip.useragent (IncomingRequest, the send exceptions, RequestSender), never to
    the asyncio endpoint."""
    bad = {
        n
        for n in _imports(path)
        if n == "gateway.sip.transport" or n.startswith("gateway.sip.transport.")
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_there_are_domain_modules() -> None:
    assert len(_domain_modules()) >= 10
