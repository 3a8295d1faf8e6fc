"""Layering (STYLE.md, docs/architecture.md): pure SIP core -> mappings -> glue -> bridge -> app.

* The pure cores import no I/O: mappings/, gateway/sip/ minus transport/, gateway/msrp/
  minus transport/, gateway/xcap/ minus its glue (server, service, source, command), and
  the bounded-cache helper gateway/memo.py.
* gateway/sdp/ (SDP for MSRP media) is pure too; it may use the MSRP core's URIs, never
  the SIP core (the INVITE glue joins them).
* The pure MSRP core is protocol only: it imports neither `mappings` nor the SIP core
  (SDP and INVITE glue will join them elsewhere).
* The pure SIP core is protocol only: gateway/sip/ minus transport/ imports nothing from
  `mappings` (mappings, the RFC 7247 / CPIM rules, may import the SIP core's types).
* mappings imports no glue: nothing of gateway except the pure SIP core and gateway.memo.
* Domain code (gateway/bridge/, gateway/registrar/) imports the SIP contract from the pure
  core (gateway.sip.useragent), never from gateway.sip.transport.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIP = ROOT / "gateway" / "sip"
FORBIDDEN = (
    "asyncio",
    "socket",
    "slixmpp",
    "aiohttp",
    "dns",
    "ssl",
    "selectors",
    "gateway.sip.transport",
    "gateway.msrp.transport",
    "gateway.xmpp",
    "gateway.admin",
    "gateway.store",
    "gateway.app",
    "gateway.bridge",
)


def _sip_core() -> list[Path]:
    return sorted(p for p in SIP.rglob("*.py") if "transport" not in p.relative_to(SIP).parts)


def _msrp_core() -> list[Path]:
    msrp = ROOT / "gateway" / "msrp"
    return sorted(p for p in msrp.rglob("*.py") if "transport" not in p.relative_to(msrp).parts)


def _sdp() -> list[Path]:
    return sorted((ROOT / "gateway" / "sdp").rglob("*.py"))


def _mappings() -> list[Path]:
    return sorted((ROOT / "mappings").rglob("*.py"))


# The XCAP package's glue modules; the rest of gateway/xcap/ is its pure core.
XCAP_GLUE = ("server.py", "service.py", "source.py", "command.py")


def _xcap_core() -> list[Path]:
    return sorted(p for p in (ROOT / "gateway" / "xcap").glob("*.py") if p.name not in XCAP_GLUE)


def _pure_modules() -> list[Path]:
    offline = ROOT / "gateway" / "bridge" / "offline" / "policy.py"
    pure = [*_mappings(), *_sip_core(), *_msrp_core(), *_sdp(), *_xcap_core()]
    return [*pure, ROOT / "gateway" / "memo.py", offline]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_pure_modules() -> None:
    assert len(_sip_core()) >= 10 and len(_mappings()) >= 5 and len(_msrp_core()) >= 8
    assert len(_sdp()) >= 3
    assert {p.name for p in _xcap_core()} >= {"core.py", "uri.py", "errors.py", "usages.py"}


@pytest.mark.parametrize("path", _sdp(), ids=_rel)
def test_sdp_imports_no_sip_and_no_mappings(path: Path) -> None:
    bad = {n for n in _imports(path) if _under(n, "mappings") or _under(n, "gateway.sip")}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}: SDP uses only the MSRP core"


@pytest.mark.parametrize("path", _msrp_core(), ids=_rel)
def test_msrp_core_imports_no_mappings_and_no_sip(path: Path) -> None:
    bad = {n for n in _imports(path) if _under(n, "mappings") or _under(n, "gateway.sip")}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}: the MSRP core is protocol only"


@pytest.mark.parametrize("path", _pure_modules(), ids=_rel)
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = {n for n in _imports(path) for f in FORBIDDEN if _under(n, f)}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _sip_core(), ids=_rel)
def test_sip_core_imports_no_mappings(path: Path) -> None:
    bad = {n for n in _imports(path) if _under(n, "mappings")}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}: the SIP core is protocol only"


@pytest.mark.parametrize("path", _mappings(), ids=_rel)
def test_mappings_import_no_glue(path: Path) -> None:
    allowed = ("gateway.sip", "gateway.memo")
    gateway = {n for n in _imports(path) if _under(n, "gateway")}
    bad = {
        n
        for n in gateway
        if not any(_under(n, a) for a in allowed) or _under(n, "gateway.sip.transport")
    }
    assert not bad, f"{_rel(path)} imports {sorted(bad)}: mappings may use only the SIP core"


def test_the_rules_can_fail() -> None:
    """The checks see imports in both forms (a broken checker would pass everything)."""
    sample = ROOT / "tests" / "unit" / "test_layering.py"
    assert {"ast", "pathlib", "pytest"} <= _imports(sample)


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


def test_msrp_test_client_is_independent() -> None:
    """Issue 18: the MSRP client of the tests must not import the code it tests."""
    client = ROOT / "tests" / "harness" / "msrpclient.py"
    bad = {n for n in _imports(client) if _under(n, "gateway") or _under(n, "mappings")}
    assert not bad, f"tests/harness/msrpclient.py imports {sorted(bad)}"
    assert {"asyncio", "hashlib", "ssl"} <= _imports(client)
