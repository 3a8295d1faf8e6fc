"""The metric names a Grafana dashboard and Prometheus rule files use, and those a scrape exposes.

`metric_names(expr)` is a small PromQL tokenizer: it drops strings, label matchers
(`{...}`), range and subquery brackets (`[5m]`), grouping label lists (`by (...)`,
`on (...)`...), numbers and durations, Grafana variables (`$instance`,
`$__rate_interval`) and keywords; an identifier followed by `(` must be a PromQL
function or aggregation (a typo fails loudly), any other identifier is a metric name.
`exposed_names(text)` reads the `# TYPE` lines of an exposition, so families without a
sample yet (a labelled counter before its first increment) count, and expands each
family to the sample names a query can use (`_total`, `_bucket`, `_sum`, `_count`...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# PromQL functions and aggregation operators (Prometheus 2.x query language reference).
FUNCTIONS = frozenset(
    """
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month
    day_of_week day_of_year days_in_month delta deriv exp floor histogram_count
    histogram_fraction histogram_quantile histogram_sum holt_winters hour idelta increase
    irate label_join label_replace ln log2 log10 minute month predict_linear rate resets
    round scalar sgn sort sort_desc sqrt time timestamp vector year avg_over_time
    min_over_time max_over_time sum_over_time count_over_time quantile_over_time
    stddev_over_time stdvar_over_time last_over_time present_over_time acos acosh asin
    asinh atan atanh cos cosh sin sinh tan tanh deg pi rad
    sum min max avg group stddev stdvar count count_values bottomk topk quantile
    """.split()  # noqa: SIM905 (a word list reads better than 80 quoted strings)
)
# Keywords; `by`, `without`, `on`, `ignoring`, `group_left`, `group_right` take label lists.
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan"}
)
_LABEL_LISTS = ("by", "without", "on", "ignoring", "group_left", "group_right")
# Series Prometheus adds to every target itself: never in an exposition.
SYNTHESIZED = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_LIST = re.compile(r"\b(" + "|".join(_LABEL_LISTS) + r")\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)")
_DURATION = re.compile(r"(?<![\w:.])(?:\d+(?:ms|[smhdwy]))+(?![\w:])")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _drop_nested(expr: str, opening: str, closing: str) -> str:
    """`expr` without any `opening ... closing` span (label matchers, ranges)."""
    out, depth = [], 0
    for ch in expr:
        if ch == opening:
            depth += 1
        elif ch == closing and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    if depth:
        raise ValueError(f"unbalanced {opening}{closing} in {expr!r}")
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects; ValueError on an unknown function."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VAR.sub(" ", text)
    text = _drop_nested(text, "{", "}")
    text = _drop_nested(text, "[", "]")
    text = _LABEL_LIST.sub(" ", text)
    text = _DURATION.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for m in _IDENT.finditer(text):
        word = m.group()
        if word.lower() in KEYWORDS:
            continue
        if text[m.end() :].lstrip().startswith("("):
            if word not in FUNCTIONS:
                raise ValueError(f"unknown PromQL function {word!r} in {expr!r}")
        else:
            names.add(word)
    return names


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, rows' nested (collapsed) panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$")


def dashboard_exprs(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of `dashboard`."""
    out = [
        (f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}", str(t.get("expr")))
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        text = str(query.get("query") if isinstance(query, Mapping) else query)
        m = _LABEL_VALUES.match(text)  # Grafana's label_values(selector, label)
        out.append((f"variable {var.get('name')}", m.group(1) if m else text))
    return out


def rule_exprs(rules: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(rule name, PromQL) of every rule of a Prometheus rule file."""
    return [
        (f"{g['name']}/{r.get('alert') or r.get('record')}", str(r["expr"]))
        for g in rules["groups"]
        for r in g["rules"]
    ]


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exposed_names(exposition: str) -> set[str]:
    """The sample names a query can select, from the `# TYPE` lines of a text exposition.

    Prometheus text 0.0.4 writes a counter's TYPE with `_total`; OpenMetrics without.
    A histogram family `x` is queried as `x_bucket`, `x_sum`, `x_count`, never as `x`.
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[:2] != ["#", "TYPE"]:
            continue
        family, kind = parts[2], parts[3]
        if kind == "counter":
            family = family.removesuffix("_total")
        names.update(family + s for s in _SUFFIXES.get(kind, ("",)))
    return names


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")")


def selector_labels(expr: str) -> set[tuple[str, str]]:
    """(metric, label name) of every label matcher in `expr`'s `metric{...}` selectors."""
    return {
        (m.group(1), lm.group(1))
        for m in _SELECTOR.finditer(expr)
        for lm in _MATCHER.finditer(m.group(2))
    }


def grouping_labels(expr: str) -> set[str]:
    """The label names of `expr`'s `by`, `without`, `on`, `ignoring`, `group_*` lists."""
    return {
        name.strip()
        for m in _LABEL_LIST.finditer(_STRING.sub(" ", expr))
        for name in m.group(0).split("(", 1)[1].rstrip(")").split(",")
        if name.strip()
    }
