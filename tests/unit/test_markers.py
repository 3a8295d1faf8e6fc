"""Every test carries a suite marker (issue 25): tests/conftest.py marks by folder and
stops collection when a test has none of unit / component / integration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest

pytest_plugins = ["pytester"]

TESTS = Path(conftest.__file__).parent


@pytest.mark.parametrize(
    ("relative", "marker"),
    [
        ("unit/test_x.py", "unit"),
        ("component/test_x.py", "component"),
        ("integration/deep/test_x.py", "integration"),
        ("harness/test_x.py", None),
        ("test_top.py", None),
    ],
)
def test_folder_marker(relative: str, marker: str | None) -> None:
    assert conftest.folder_marker(TESTS / relative) == marker
    assert conftest.folder_marker(TESTS.parent / "bench" / "test_x.py") is None


def test_this_file_is_marked_unit(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None


def _suite(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\naddopts = --strict-markers\n"
        "markers =\n    unit: u\n    component: c\n    integration: i\n"
    )
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "conftest.py").write_text(
        Path(conftest.__file__).read_text(encoding="utf-8"), encoding="utf-8"
    )
    for folder in ("unit", "component"):
        (pytester.path / "tests" / folder).mkdir()
        (pytester.path / "tests" / folder / f"test_{folder}.py").write_text(
            "def test_ok():\n    pass\n", encoding="utf-8"
        )


def test_marked_suite_collects_and_selects(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = pytester.runpytest_subprocess("-m", "component", "tests")
    result.assert_outcomes(passed=1, deselected=1)
    result = pytester.runpytest_subprocess("-m", "unit or component", "tests")
    result.assert_outcomes(passed=2)


def test_unmarked_test_fails_collection(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    (pytester.path / "tests" / "elsewhere").mkdir()
    (pytester.path / "tests" / "elsewhere" / "test_stray.py").write_text(
        "def test_stray():\n    pass\n", encoding="utf-8"
    )
    result = pytester.runpytest_subprocess("tests")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*1 test(s) carry none of the markers*", "*test_stray*"])
    # marked in the file itself: accepted wherever it lives
    (pytester.path / "tests" / "elsewhere" / "test_stray.py").write_text(
        "import pytest\npytestmark = pytest.mark.unit\ndef test_stray():\n    pass\n",
        encoding="utf-8",
    )
    pytester.runpytest_subprocess("tests").assert_outcomes(passed=3)
