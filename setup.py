"""Optional mypyc build of the hot pure modules (issue 27).

Without CPIM_MYPYC=1 this adds nothing to pyproject.toml: plain `pip install .` needs no
C toolchain and installs the pure-Python sources. With CPIM_MYPYC=1 the modules listed in
gateway/compiled.py are compiled with mypyc (scripts/build_backend.py adds mypy to the
build requirements) and installed beside their `.py` sources, which Python then no longer
imports. `make compiled` builds the same extensions into build/mypyc/ for tests and
benchmarks (docs/performance.md, "mypyc (issue 27)").
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _ext_modules() -> list[object]:
    if os.environ.get("CPIM_MYPYC", "") != "1":
        return []
    from mypyc.build import mypycify  # CPIM_MYPYC=1 without mypy fails here, loudly

    modules = runpy.run_path(str(ROOT / "gateway" / "compiled.py"))["MODULES"]
    paths = [name.replace(".", "/") + ".py" for name in modules]
    return list(mypycify(paths, opt_level=os.environ.get("CPIM_MYPYC_OPT", "3")))


setup(ext_modules=_ext_modules())
