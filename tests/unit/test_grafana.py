"""The Grafana dashboard (deploy/grafana/) and the Prometheus alert rules (deploy/prometheus/).

Checks that the dashboard is a well-formed Grafana 10 dashboard (top-level keys, the
datasource and instance variables, unique panel ids, a gridPos each and no two panels
overlapping, an expr in every target), that every rule has what an operator needs
(alert, expr, for, a severity, a summary), and that every metric name either file uses
is exported by the gateway's registry (generated here, no process), and conversely that
every exported family is on the dashboard. docs/operations.md names every rule.
The same names against a running gateway: tests/integration/test_grafana_metrics.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from gateway import heap
from gateway.admin.collectors import register_collectors
from gateway.metrics import Metrics
from gateway.sip.useragent import EndpointStats
from gateway.xmpp.links import LinkState, LinkStatus
from tests.harness.promql import (
    SYNTHESIZED,
    dashboard_exprs,
    exposed_names,
    grouping_labels,
    metric_names,
    panels,
    rule_exprs,
    selector_labels,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "cpim-gateway.json"
RULES = ROOT / "deploy" / "prometheus" / "cpim-gateway-rules.yml"
SEVERITIES = {"critical", "warning", "info"}


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_rules() -> dict[str, Any]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@dataclass
class FakeEndpoint:
    transactions_in_flight: int = 0
    stats: EndpointStats = field(default_factory=EndpointStats)
    draining: bool = False


@dataclass
class FakeResolver:
    lookups: int = 0
    failures: int = 0
    cache_hits: int = 0


def full_exposition(*, openmetrics: bool = False) -> str:
    """/metrics of a gateway with every service (the collectors app.py registers)."""
    metrics = Metrics()
    register_collectors(
        metrics.registry,
        endpoint=FakeEndpoint(),
        connections=list,
        links=lambda: [
            LinkStatus("sip.localhost", LinkState.UP, 1.0e9, None, 0, None, 0, "127.0.0.1", 5347)
        ],
        resolver=FakeResolver(),
    )

    async def scrape() -> bytes:  # inside a loop, as the admin server scrapes (asyncio tasks)
        return (generate_openmetrics if openmetrics else generate_latest)(metrics.registry)

    return asyncio.run(scrape()).decode()


# -- the tokenizer ---------------------------------------------------------------------


def test_metric_names_skips_functions_labels_ranges_variables_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, direction) (rate(x_bucket{instance=~"$instance",'
        ' le!="+Inf"}[$__rate_interval]))) / on (instance) group_left (kind)'
        " sum without (kind) (y_total offset 5m) > bool 2e-3 and z:rec[1h:5m] unless ${v} * inf"
    )
    assert metric_names(expr) == {"x_bucket", "y_total", "z:rec"}
    assert metric_names('label_replace(up, "a", "$1", "b", "(by)")') == {"up"}
    assert metric_names("log2(a) + clamp_min(b, 1)") == {"a", "b"}
    with pytest.raises(ValueError, match="unknown PromQL function 'rat'"):
        metric_names("rat(cpim_messages_total[5m])")
    with pytest.raises(ValueError, match="unbalanced"):
        metric_names('rate(x{a="b"[5m])')


def test_selector_and_grouping_labels() -> None:
    expr = (
        'sum by (direction) (rate(m_total{instance=~"$instance", outcome!~"a|b"}[5m]))'
        ' / on (instance) group_left sum without (kind, le) (g{kind="in_use"})'
        ' > bool label_replace(h, "by (x)", "", "", "")'
    )
    assert selector_labels(expr) == {
        ("m_total", "instance"),
        ("m_total", "outcome"),
        ("g", "kind"),
    }
    assert grouping_labels(expr) == {"direction", "instance", "kind", "le"}


def test_exposed_names_reads_type_lines_in_both_formats() -> None:
    text = "\n".join(
        [
            "# TYPE a_total counter",
            "# TYPE h histogram",
            "# TYPE g gauge",
            "g 1.0",
            "# HELP not a type line",
        ]
    )
    assert exposed_names(text) == {
        *("a_total", "a_created", "h_bucket", "h_sum", "h_count", "h_created", "g"),
    }
    assert exposed_names("# TYPE a counter\n# EOF\n") == {"a_total", "a_created"}
    # No family for a counter's bare name nor a histogram's.
    assert "h" not in exposed_names(text) and "a" not in exposed_names(text)


def test_the_registry_exposes_families_before_any_observation() -> None:
    names = exposed_names(full_exposition())
    assert {"cpim_messages_total", "cpim_message_handling_seconds_bucket"} <= names
    assert "cpim_asyncio_tasks" in names
    assert exposed_names(full_exposition(openmetrics=True)) == names


# -- the dashboard ---------------------------------------------------------------------


def test_dashboard_is_a_grafana_10_dashboard() -> None:
    d = load_dashboard()
    for key in ("panels", "templating", "schemaVersion", "uid", "title", "time", "refresh"):
        assert key in d, key
    assert d["uid"] == "cpim-gateway" and len(d["uid"]) <= 40
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36  # Grafana 9.4+
    assert d["time"]["from"].startswith("now-") and d["time"]["to"] == "now"
    assert d["id"] is None  # imported dashboards get their id from Grafana
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    inst = variables["instance"]
    assert inst["type"] == "query"
    assert inst["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert inst["includeAll"] and inst["multi"] and inst["allValue"] == ".*"


def test_every_panel_has_a_unique_id_and_a_place_and_no_two_overlap() -> None:
    all_panels = list(panels(load_dashboard()))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), ids
    cells: dict[tuple[int, int], int] = {}
    for p in all_panels:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), p["title"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]


def test_every_query_panel_has_targets_with_an_expr_on_the_chosen_instances() -> None:
    queried = [p for p in panels(load_dashboard()) if p["type"] != "row"]
    assert len(queried) >= 20
    for p in queried:
        assert p["title"] and p["targets"], p["id"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert isinstance(t["expr"], str) and t["expr"].strip(), p["title"]
            # Every selector is narrowed to the instance variable.
            selectors = len(re.findall(r"\bcpim_\w+\{", t["expr"]))
            assert selectors and t["expr"].count('instance=~"$instance"') == selectors, t["expr"]


def test_latency_panels_show_p50_p95_p99_over_the_buckets() -> None:
    exprs = [e for _, e in dashboard_exprs(load_dashboard())]
    buckets = [e for e in exprs if "cpim_message_handling_seconds_bucket" in e]
    for q in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({q}, sum by (le)" in e for e in buckets), q


# -- the alert rules -------------------------------------------------------------------


def test_every_rule_has_expr_for_severity_and_summary() -> None:
    rules = load_rules()
    assert [g["name"] for g in rules["groups"]] == ["cpim-gateway"]
    names = []
    for rule in rules["groups"][0]["rules"]:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        names.append(rule["alert"])
        assert re.fullmatch(r"Cpim[A-Z]\w+", rule["alert"])
        assert str(rule["expr"]).strip()
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
    assert len(names) == len(set(names))


def test_docs_describe_every_rule() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## What to alert on", 1)[1].split("\n## ", 1)[0]
    for name, _ in rule_exprs(load_rules()):
        assert f"`{name.split('/')[1]}`" in section, name


# -- the names ---------------------------------------------------------------------------


def test_every_metric_name_used_is_exported_and_every_family_is_shown() -> None:
    exported = exposed_names(full_exposition())
    if not heap.available():  # off glibc the heap family is absent (docs/admin-api.md)
        exported |= {"cpim_heap_bytes"}
    on_dashboard = {n for _, e in dashboard_exprs(load_dashboard()) for n in metric_names(e)}
    in_rules = {n for _, e in rule_exprs(load_rules()) for n in metric_names(e)}
    assert on_dashboard - exported == set()
    assert in_rules - exported - SYNTHESIZED == set()
    # Every exported family is on the dashboard (a new metric needs a panel).
    families = {
        line.split()[2].removesuffix("_total")
        for line in full_exposition().splitlines()
        if line.startswith("# TYPE ")
    }
    shown = {n.removesuffix("_total").removesuffix("_bucket") for n in on_dashboard}
    shown |= {n.removesuffix("_sum").removesuffix("_count") for n in on_dashboard}
    assert families - shown == set()
