"""The optional mypyc build (issue 27): the run tests the build it was asked to test.

`make test-compiled` sets CPIM_EXPECT_COMPILED=1 and puts build/mypyc first on the path;
every module of `gateway.compiled.MODULES` must then come from a compiled extension, so
that run cannot silently test pure Python. Every other run must import them all from
their `.py` sources, so the pure run cannot silently test a stale compiled build either.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from gateway import compiled
from gateway.sip import compiling

ROOT = Path(__file__).resolve().parents[2]
EXPECT_COMPILED = os.environ.get("CPIM_EXPECT_COMPILED", "") == "1"


def test_listed_modules_have_sources_in_the_tree() -> None:
    for name in compiled.MODULES:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


def test_report_follows_the_module_files() -> None:
    done = set(compiled.compiled_modules())
    assert done.isdisjoint(compiled.not_compiled())
    for name in compiled.MODULES:
        file = importlib.import_module(name).__file__ or ""
        assert (name in done) == file.endswith(".so"), (name, file)


def test_run_imports_the_build_it_was_asked_for() -> None:
    if EXPECT_COMPILED:
        assert compiled.not_compiled() == ()
    else:
        assert compiled.compiled_modules() == ()


def test_main_requires_every_module_compiled() -> None:
    rc = compiled.main(["--require"])
    assert rc == (0 if EXPECT_COMPILED else 1)
    assert compiled.main([]) == 0


def test_native_class_mark_changes_nothing_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mypyc_attr` returns the class itself, with mypy_extensions and without it (a plain
    `pip install` has no mypy): the pure-Python classes are the same either way."""

    class Plain:
        pass

    assert compiling.mypyc_attr(native_class=False)(Plain) is Plain
    monkeypatch.setitem(sys.modules, "mypy_extensions", None)  # import now fails
    spec = importlib.util.spec_from_file_location("compiling_without", compiling.__file__)
    assert spec is not None and spec.loader is not None
    without = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(without)
    assert without.mypyc_attr(native_class=False)(Plain) is Plain
    assert without.mypyc_attr is not compiling.mypyc_attr


def test_benchmark_child_refuses_the_other_build(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/compiled_bench.py cannot label pure figures as compiled, or the reverse."""
    from bench import compiled_bench

    other = "pure" if EXPECT_COMPILED else "compiled"
    assert compiled_bench.main(["--child", other, "-n", "1", "--repeat", "1"]) == 2
    assert f"expected a {other} build" in capsys.readouterr().err
