"""The Grafana dashboard and the alert rules against a running gateway and Prometheus' own tools.

- Every metric name the dashboard (deploy/grafana/cpim-gateway.json) and the alert rules
  (deploy/prometheus/cpim-gateway-rules.yml) use is in /metrics of a running gateway
  (real Prosody, sipp both ways, a slixmpp client) after one message each way, and every
  label they select or group by is on that metric's samples.
- `promtool check rules` accepts the rules, and every dashboard query (as a recording
  rule): Prometheus' own PromQL parser.
- `promtool test rules`: the main alerts fire on the series they describe, after their
  `for`, and stay quiet on healthy series.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import require_binary
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port
from tests.harness.promql import (
    SYNTHESIZED,
    dashboard_exprs,
    exposed_names,
    grouping_labels,
    metric_names,
    rule_exprs,
    selector_labels,
)
from tests.harness.sipp import Sipp
from tests.integration.conftest import ClientFactory
from tests.integration.test_admin_running import COMPONENT, send_message, start

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "cpim-gateway.json"
RULES = ROOT / "deploy" / "prometheus" / "cpim-gateway-rules.yml"
# Labels Prometheus attaches to every series of a target (not in the exposition).
TARGET_LABELS = {"instance", "job"}


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_rules() -> dict[str, Any]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def sample_labels(text: str) -> dict[str, set[str]]:
    """Sample name -> the label names its samples carry."""
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


async def test_every_metric_used_is_in_metrics_after_one_message_each_way(
    gateway: Callable[..., GatewayProcess], xmpp_client: ClientFactory, sipp: Sipp
) -> None:
    uas_port = free_port()
    admin = start(
        gateway,
        sip={  # not hosted: XMPP -> SIP goes to the route, a sipp UAS
            "hosted_domains": [],
            "routes": [{"domain": COMPONENT, "target": f"sip:127.0.0.1:{uas_port}"}],
        },
    )
    await admin.wait_ready()
    juliet = await xmpp_client(prefix="juliet")

    # SIP -> XMPP: sipp sends, juliet receives.
    result = await send_message(sipp, admin, f"sip:{juliet.jid.bare}", "grafana s2x")
    assert result.ok, result.describe()
    await juliet.wait_message(lambda m: m["body"].strip() == "grafana s2x", timeout=15)
    # XMPP -> SIP: juliet sends, a sipp UAS answers 200.
    with sipp.uas("message_uas", local_port=uas_port, timeout=40) as uas:
        juliet.send_message(f"romeo@{COMPONENT}", "grafana x2s")
        answered = await asyncio.to_thread(uas.wait)
    assert answered.ok, answered.describe() + admin.proc.tail()

    delivered = {
        ("cpim_messages_total", d): 1.0 for d in ("sip_to_xmpp", "xmpp_to_sip")
    }  # the gateway counts the fate on the final answer: poll until both are in
    deadline = time.monotonic() + 15
    while True:
        status, text = await admin.get("/metrics")
        assert status == 200
        seen = {
            (s.name, s.labels.get("direction")): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == "cpim_messages_total" and s.labels.get("outcome") == "delivered"
        }
        if seen == delivered:
            break
        assert time.monotonic() < deadline, f"{seen}\n{admin.proc.tail()}"
        await asyncio.sleep(0.2)

    exported = exposed_names(text)
    labels = sample_labels(text)
    for d in ("sip_to_xmpp", "xmpp_to_sip"):  # the latency histogram has both series now
        assert f'cpim_message_handling_seconds_bucket{{direction="{d}",le="+Inf"}} 1.0' in text
    assert labels["cpim_heap_bytes"] == {"kind"}

    exprs = dashboard_exprs(load_dashboard()) + rule_exprs(load_rules())
    assert len(exprs) > 40
    for where, expr in exprs:
        names = metric_names(expr)
        missing = names - exported - SYNTHESIZED
        assert not missing, f"{where}: {sorted(missing)} not in /metrics"
        for metric, label in selector_labels(expr):
            if metric in labels and label not in TARGET_LABELS:
                assert label in labels[metric], f"{where}: {metric} has no label {label}"
        # A single-metric query can only group by that metric's labels.
        if len(names) == 1 and (only := next(iter(names))) in labels:
            extra = grouping_labels(expr) - labels[only] - TARGET_LABELS
            assert not extra, f"{where}: {only} has no label {sorted(extra)}"


# -- promtool ------------------------------------------------------------------------------


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = require_binary("promtool", package="prometheus")
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    expr = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
    assert "$" not in expr, expr
    return expr


def test_promtool_accepts_the_rules_and_every_dashboard_query(tmp_path: Path) -> None:
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_exprs(load_rules()))} rules found" in checked.stdout
    queries = [
        (where, e) for where, e in dashboard_exprs(load_dashboard()) if "label_values" not in e
    ]
    records = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(e)}
                    for i, (_, e) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(records), encoding="utf-8")
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A broken query is refused: the check is not vacuous.
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "a:b", "expr": "sum by (le (x)"}]}]}
        ),
        encoding="utf-8",
    )
    assert promtool("check", "rules", path).returncode != 0


def descriptions() -> dict[str, str]:
    return {
        r["alert"]: r["annotations"]["description"]
        for g in load_rules()["groups"]
        for r in g["rules"]
    }


def alert(name: str, at: str, *firing: tuple[dict[str, str], str, str | None]) -> dict[str, Any]:
    """A promtool alert_rule_test: `name` at `at` fires exactly for `firing`.

    Each of `firing` is (labels, rendered summary, rendered description or None for the
    rule's own text when it has no template).
    """
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": labels,
                "exp_annotations": {
                    "summary": summary,
                    "description": description or descriptions()[name],
                },
            }
            for labels, summary, description in firing
        ],
    }


def test_promtool_alerts_fire_on_what_they_describe(tmp_path: Path) -> None:
    gw = {"job": "cpim-gateway", "instance": "gw:8080"}
    sel = 'job="cpim-gateway",instance="gw:8080"'

    def series(name: str, values: str, **labels: str) -> dict[str, str]:
        extra = "".join(f',{k}="{v}"' for k, v in labels.items())
        return {"series": f"{name}{{{sel}{extra}}}", "values": values}

    # One sample a minute. Bucket `le` below: 0.5 s holds 99 % unless the slow phase.
    inputs = [
        series("up", "1 1 0x10"),
        series("cpim_component_link_up", "1 1 1 0x10", domain="sip.example.org"),
        series("cpim_sip_draining", "0x20"),
        # 600 messages a minute; from minute 10 on, 60 of them fail (10 %).
        series(
            "cpim_messages_total",
            "0+600x10 6000+540x30",
            direction="sip_to_xmpp",
            outcome="delivered",
        ),
        series("cpim_messages_total", "0x10 0+60x30", direction="sip_to_xmpp", outcome="failed"),
        series("cpim_messages_total", "0+600x40", direction="xmpp_to_sip", outcome="delivered"),
        series("cpim_messages_total", "0+6x40", direction="xmpp_to_sip", outcome="timeout"),
        # Latency: everything under 0.5 s, except from minute 10 on a quarter takes 3 s.
        series(
            "cpim_message_handling_seconds_bucket",
            "0+600x10 6000+450x30",
            direction="sip_to_xmpp",
            le="0.5",
        ),
        series(
            "cpim_message_handling_seconds_bucket",
            "0+600x40",
            direction="sip_to_xmpp",
            le="5.0",
        ),
        series(
            "cpim_message_handling_seconds_bucket",
            "0+600x40",
            direction="sip_to_xmpp",
            le="+Inf",
        ),
        series("cpim_sip_requests_refused_total", "0+120x40", reason="rate-limited"),
        series("cpim_sip_requests_refused_total", "0+1200x40", reason="challenge"),
    ]
    # Heap: in use and Python blocks both grow for 2 days on instance gw; on instance
    # steady only the heap grows (fragmentation, not a leak).
    steady = 'job="cpim-gateway",instance="steady:8080"'
    inputs += [
        {"series": f'cpim_heap_bytes{{{sel},kind="in_use"}}', "values": "1e6+1000x3000"},
        {"series": f"cpim_python_allocated_blocks{{{sel}}}", "values": "1e5+10x3000"},
        {"series": f'cpim_heap_bytes{{{steady},kind="in_use"}}', "values": "1e6+1000x3000"},
        {"series": f"cpim_python_allocated_blocks{{{steady}}}", "values": "1e5+0x3000"},
    ]
    inst = {"instance": "gw:8080"}
    s2x = {**inst, "direction": "sip_to_xmpp", "severity": "warning"}
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    # up is 0 from minute 2: pending, then firing after 1m.
                    alert("CpimGatewayDown", "2m"),
                    alert(
                        "CpimGatewayDown",
                        "3m",
                        (
                            {**gw, "severity": "critical"},
                            "CPIM gateway gw:8080 does not answer /metrics",
                            None,
                        ),
                    ),
                    # The link is down from minute 3.
                    alert("CpimComponentLinkDown", "3m"),
                    alert(
                        "CpimComponentLinkDown",
                        "4m",
                        (
                            {**inst, "domain": "sip.example.org", "severity": "critical"},
                            "XMPP component link sip.example.org down on gw:8080",
                            "The XMPP server is unreachable or refused the secret (see the"
                            " gateway log); messages to and from sip.example.org get 503.",
                        ),
                    ),
                    alert("CpimGatewayNotReady", "4m"),
                    alert(
                        "CpimGatewayNotReady",
                        "5m",
                        (
                            {**inst, "severity": "critical"},
                            "CPIM gateway gw:8080 not ready for 2 minutes",
                            None,
                        ),
                    ),
                    # sip_to_xmpp: 10 % fail from minute 10 (for 10m); xmpp_to_sip 1 %.
                    alert("CpimMessagesNotDelivered", "12m"),
                    alert(
                        "CpimMessagesNotDelivered",
                        "25m",
                        (
                            s2x,
                            "More than 5 % of sip_to_xmpp messages fail or time out on gw:8080",
                            "Failed or timed-out pager messages over all messages (rejections"
                            " by the far side are not counted). Value 10%.",
                        ),
                    ),
                    alert("CpimMessageLatencyHigh", "9m"),
                    alert(
                        "CpimMessageLatencyHigh",
                        "25m",
                        (
                            s2x,
                            "p99 sip_to_xmpp message handling above 2 s on gw:8080",
                            "An overloaded XMPP server or slow SIP targets. p99 is 4.82s.",
                        ),
                    ),
                    # 2 rate-limited 503s a second for 10 minutes; challenges are no overload.
                    alert("CpimSipOverloaded", "5m"),
                    alert(
                        "CpimSipOverloaded",
                        "20m",
                        (
                            {**inst, "severity": "warning"},
                            "CPIM gateway gw:8080 answers more than 1 request/s with 503"
                            " Rate Limited",
                            None,
                        ),
                    ),
                    # Only gw, where both grow; steady's heap alone grows.
                    alert("CpimHeapGrowth", "1d"),
                    alert(
                        "CpimHeapGrowth",
                        "2d",
                        (
                            {**gw, "kind": "in_use", "severity": "warning"},
                            "Heap in use and Python blocks both grew for a day on gw:8080",
                            None,
                        ),
                    ),
                ],
            }
        ],
    }
    path = tmp_path / "rules-test.yml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS", result.stdout), result.stdout
