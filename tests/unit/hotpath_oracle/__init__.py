"""Frozen copy of mappings/{model,jid,addresses}.py as they were before the round-4 speed
work (issue 11), with imports pointed at this package.

Why it exists: those modules got fast paths (compiled regexes instead of per-character
`unicodedata` loops, ASCII fast paths, fewer re-checks) under the rule that behaviour stays
exactly the same. tests/unit/test_hotpath_oracle.py runs both over random and near-valid
inputs and requires the same results and the same errors (type and text). Do not edit these
files to follow later changes: they are the reference.

sip.py holds the old bodies of the gateway/sip functions changed in the same round, written
over the public API. bench/hotpath_bench.py times both.
"""
