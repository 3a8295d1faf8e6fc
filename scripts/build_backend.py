"""setuptools' build backend, plus mypy as a build requirement when CPIM_MYPYC=1 (issue 27).

pyproject.toml points `build-backend` here so that `CPIM_MYPYC=1 pip install .` gets mypy
(mypyc) in its isolated build environment while a plain `pip install .` asks for
setuptools alone. Everything else is setuptools.build_meta unchanged; setup.py compiles.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403

MYPY = "mypy>=1.10"


@contextmanager
def _pure() -> Iterator[bool]:
    """Run setup.py without CPIM_MYPYC (the requirement query, when mypyc may not be
    installed yet); yield whether the compiled build was asked for."""
    asked = os.environ.pop("CPIM_MYPYC", None)
    try:
        yield asked == "1"
    finally:
        if asked is not None:
            os.environ["CPIM_MYPYC"] = asked


def _requires(query: Callable[[dict[str, object] | None], list[str]]) -> Callable[..., list[str]]:
    def get_requires(config_settings: dict[str, object] | None = None) -> list[str]:
        with _pure() as compiling:
            return [*query(config_settings), *([MYPY] if compiling else [])]

    return get_requires


get_requires_for_build_wheel = _requires(build_meta.get_requires_for_build_wheel)
get_requires_for_build_editable = _requires(build_meta.get_requires_for_build_editable)
