"""scripts/soak.py's measuring tools: RSS by mapping, the heap columns, the trend verdict."""

from __future__ import annotations

import os

from scripts.soak import heap_columns, proc_rss, proc_rss_by_kind, trend


def test_rss_by_kind_adds_up_to_vmrss() -> None:
    kinds = proc_rss_by_kind(os.getpid())
    total = proc_rss(os.getpid()) / 2**20
    assert set(kinds) == {"rss_brk_mib", "rss_anon_mib", "rss_file_mib", "rss_other_mib"}
    assert kinds["rss_file_mib"] > 1  # the interpreter and its libraries
    assert kinds["rss_brk_mib"] + kinds["rss_anon_mib"] > 1
    assert abs(sum(kinds.values()) - total) < max(0.05 * total, 1.0), (kinds, total)


def test_rss_by_kind_of_a_gone_process_is_empty() -> None:
    assert proc_rss_by_kind(2**22 + 12345) == {}


def test_heap_columns_read_labelled_samples() -> None:
    metrics = {
        'cpim_heap_bytes{kind="arena"}': 3 * 2**20,
        'cpim_heap_bytes{kind="in_use"}': 2 * 2**20,
        'cpim_heap_bytes{kind="free"}': 2**20,
        "cpim_python_allocated_blocks": 1234.0,
    }
    assert heap_columns(metrics) == {
        "heap_arena_mib": 3.0,
        "heap_in_use_mib": 2.0,
        "heap_free_mib": 1.0,
        "heap_mmapped_mib": -1,
        "py_blocks": 1234.0,
    }
    assert heap_columns({})["py_blocks"] == -1


def test_trend_tells_growth_from_noise() -> None:
    steps = [(t * 30.0, 70.0 + (0.3 if t % 2 else 0.0)) for t in range(200)]
    assert not trend(steps, 1.0).growth
    creep = [(t * 30.0, 70.0 + t * 0.01) for t in range(200)]  # +2 MiB over 100 minutes
    assert trend(creep, 1.0).growth
    small = [(t * 30.0, 70.0 + t * 0.004) for t in range(200)]  # +0.8 MiB: under the floor
    assert not trend(small, 1.0).growth
