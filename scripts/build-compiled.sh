#!/usr/bin/env bash
# The optional mypyc build (issue 27) into a separate tree: build/mypyc/ holds a copy of
# gateway/ and mappings/ with the modules of gateway/compiled.py compiled beside their
# sources. Put it first on PYTHONPATH to run the compiled code:
#     PYTHONPATH=build/mypyc:$PWD .venv/bin/python -m gateway.compiled --require
# Incremental: mypyc rewrites only the C files whose source changed and setuptools relinks
# only when a C file is newer than the extension, so an unchanged tree rebuilds in the time
# of mypyc's type check. Needs gcc and the Python headers (scripts/install-deps.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
DEST="${CPIM_MYPYC_DEST:-$ROOT/build/mypyc}"
cd "$ROOT"
mkdir -p "$DEST"
# The pure sources first (stale ones removed), so that the packages resolve in $DEST and
# every module not compiled is imported from its .py there.
for pkg in gateway mappings; do
    if [ -d "$DEST/$pkg" ]; then
        find "$DEST/$pkg" -name '*.py' -delete
    fi
    cp -r "$pkg" "$DEST/"
done
find "$DEST" -name __pycache__ -prune -exec rm -rf {} +
# An extension of a module no longer in gateway/compiled.py would shadow its .py: remove it.
"$VENV/bin/python" - "$DEST" <<'PY'
import runpy, sys
from pathlib import Path
dest = Path(sys.argv[1])
listed = set(runpy.run_path("gateway/compiled.py")["MODULES"])
for so in [*dest.glob("gateway/**/*.so"), *dest.glob("mappings/**/*.so")]:
    name = ".".join(so.relative_to(dest).with_name(so.name.split(".")[0]).parts)
    if name not in listed:
        so.unlink()
        print(f"build-compiled: removed {so} (not in gateway/compiled.py)", file=sys.stderr)
PY
# mypyc writes its C under ./build (build/__native*.c, per module build/gateway/...).
CPIM_MYPYC=1 "$VENV/bin/python" setup.py -q build_ext \
    --build-lib "$DEST" --build-temp "$ROOT/build/mypyc-temp" --parallel "${CPIM_MYPYC_JOBS:-2}"
PYTHONPATH="$DEST:$ROOT" "$VENV/bin/python" -P -m gateway.compiled --require  # -P: not ./gateway first
