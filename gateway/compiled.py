"""Which pure modules the optional mypyc build compiles, and which of them are (issue 27).

The pure-Python sources are the source of truth and the fallback: a checkout without a
build imports them unchanged. The mypyc build (docs/performance.md, "mypyc (issue 27)")
compiles the modules in `MODULES` to C extensions that Python imports instead of the
`.py` beside them. `python -m gateway.compiled` prints which are compiled;
`python -m gateway.compiled --require` exits 1 unless every listed module is.

This module is read by setup.py by path (no package import), so it imports nothing of
the gateway.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["MODULES", "compiled_modules", "main", "not_compiled"]

# The hot pure modules, in dependency order (docs/performance.md says why each is here and
# why others are not).
MODULES: tuple[str, ...] = (
    "gateway.memo",
    "gateway.sip.abnf",
    "gateway.sip.uri",
    "gateway.sip.headers",
    "gateway.sip.message",
    "gateway.sip.parser",
    "gateway.sip.serializer",
    "gateway.sip.validate",
    "gateway.sip.ua",
    "gateway.sip.timers",
    "gateway.sip.transaction_events",
    "gateway.sip.transaction",
    "gateway.sip.transaction_layer",
    "gateway.sip.useragent",
    "mappings.model",
    "mappings.jid",
    "mappings.addresses",
    "mappings.cpim",
)


def _is_compiled(name: str) -> bool:
    module = importlib.import_module(name)
    return (getattr(module, "__file__", None) or "").endswith((".so", ".pyd"))


def compiled_modules() -> tuple[str, ...]:
    """The modules of `MODULES` imported from a compiled extension."""
    return tuple(name for name in MODULES if _is_compiled(name))


def not_compiled() -> tuple[str, ...]:
    """The modules of `MODULES` imported from their `.py` source."""
    return tuple(name for name in MODULES if not _is_compiled(name))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    done = set(compiled_modules())
    for name in MODULES:
        print(f"{'compiled' if name in done else 'pure    '}  {name}")
    if "--require" in args and len(done) < len(MODULES):
        print(f"not compiled: {len(MODULES) - len(done)} of {len(MODULES)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
