"""Suite-wide configuration: markers by folder, and no test without one.

Every test carries exactly the markers its folder gives (`unit`, `component`,
`integration`) or one of them set in the file; a collected test with none of the three
stops the run (issue 25: `make unit` and `make integration` select by marker, so an
unmarked test would silently run in neither).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

_HERE = Path(__file__).parent

SUITE_MARKERS = ("unit", "component", "integration")


def folder_marker(path: Path) -> str | None:
    """The marker of the folder right under tests/ holding `path`, if it is one of ours."""
    try:
        parts = path.resolve().relative_to(_HERE.resolve()).parts
    except ValueError:
        return None  # outside tests/
    return parts[0] if parts and parts[0] in SUITE_MARKERS else None


def unmarked(items: Iterable[pytest.Item]) -> list[str]:
    """Node ids of the items that carry none of SUITE_MARKERS."""
    return [
        item.nodeid
        for item in items
        if not any(item.get_closest_marker(name) for name in SUITE_MARKERS)
    ]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by folder, then refuse to run a test that still has no suite marker."""
    for item in items:
        marker = folder_marker(Path(str(item.path)))
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
    missing = unmarked(items)
    if missing:
        listed = "\n  ".join(missing[:20])
        raise pytest.UsageError(
            f"{len(missing)} test(s) carry none of the markers {', '.join(SUITE_MARKERS)}"
            f" (put them under tests/unit, tests/component or tests/integration):\n  {listed}"
        )
