"""Benchmarks (issue 11): one module per scenario, registered in `bench.run`.

Figures are goals to measure and report honestly (docs/performance.md), never test
assertions. Every scenario measures a bare baseline in the same run and reports the ratio.
"""
