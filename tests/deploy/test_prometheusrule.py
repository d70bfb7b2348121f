"""templates/prometheusrule.yaml: the alerts render only when enabled, pass `promtool check rules` with the
default and with tripped thresholds, take their thresholds from values, stay in the release namespace, and
query only metrics the dashboards' contract knows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.conftest import NAMESPACE, one
from tests.deploy.test_dashboards import ragserve_metrics, ray_serve_metrics, vllm_metrics

ALERTS = {
    "RagserveHighErrorRate",
    "RagserveLatencySLOBreach",
    "RagserveQueueGrowing",
    "RagserveGeneratorWaitingHigh",
    "RagserveNoReadyReplicas",
}


def rules(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"]}


def check_rules(
    promtool: str, groups: list[dict[str, Any]], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_rule_renders_only_when_enabled(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not [d for d in rendered["default"] if d["kind"] == "PrometheusRule"]
    rule = one(rendered["monitoring"], "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(rules(rule["spec"]["groups"])) == ALERTS


@pytest.mark.parametrize("thresholds", ["defaults", "tripped"])
def test_promtool_accepts_the_rules(promtool: str, tmp_path: Path, thresholds: str) -> None:
    overrides = promql.TRIPPED_THRESHOLDS if thresholds == "tripped" else None
    groups = promql.rendered_rule_groups(overrides, namespace=NAMESPACE)
    proc = check_rules(promtool, groups, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout
    broken = [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(x[5m])"}]}]
    assert check_rules(promtool, broken, tmp_path).returncode != 0


def test_alert_fields(rendered: dict[str, list[dict[str, Any]]]) -> None:
    by_name = rules(one(rendered["monitoring"], "PrometheusRule")["spec"]["groups"])
    for name, rule in by_name.items():
        assert re.fullmatch(r"\d+m", rule["for"]), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["team"] == "search", "additionalRuleLabels"
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        assert ann["runbook_url"] == (
            "https://git.example.com/ragserve/blob/main/docs/observability.md#" + name.lower()
        )
    assert by_name["RagserveHighErrorRate"]["labels"]["severity"] == "critical"
    defaults = rules(promql.rendered_rule_groups(namespace=NAMESPACE))
    assert all("runbook_url" not in r["annotations"] for r in defaults.values()), "no base URL, no link"


def test_runbook_anchors_exist_in_the_docs() -> None:
    doc = (promql.REPO / "docs" / "observability.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", doc, re.M)
    }
    assert {a.lower() for a in ALERTS} <= anchors


def test_thresholds_come_from_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    defaults = rules(promql.rendered_rule_groups(namespace=NAMESPACE))
    assert defaults["RagserveHighErrorRate"]["expr"].endswith("> 0.05")
    assert defaults["RagserveLatencySLOBreach"]["expr"].endswith("> 30")
    assert defaults["RagserveNoReadyReplicas"]["expr"].endswith("< 1")
    assert rules(one(rendered["monitoring"], "PrometheusRule")["spec"]["groups"])["RagserveLatencySLOBreach"][
        "expr"
    ].endswith("> 20")
    custom = rules(
        promql.rendered_rule_groups(
            {"alerts.highErrorRate.threshold": 0.2, "alerts.queueGrowing.minQueued": 50}, namespace=NAMESPACE
        )
    )
    assert custom["RagserveHighErrorRate"]["expr"].endswith("> 0.2")
    assert ") > 50\nand\n" in custom["RagserveQueueGrowing"]["expr"]
    tripped = rules(promql.rendered_rule_groups(promql.TRIPPED_THRESHOLDS, namespace=NAMESPACE))
    assert tripped["RagserveNoReadyReplicas"]["expr"].endswith(
        "< 1e+06"
    )  # --set-json numbers are floats to Helm
    assert tripped["RagserveLatencySLOBreach"]["expr"].endswith("> -1")


def test_each_alert_can_be_switched_off() -> None:
    keys = ["highErrorRate", "latencySLO", "queueGrowing", "generatorWaiting", "noReadyReplicas"]
    left = rules(promql.rendered_rule_groups({f"alerts.{k}.enabled": False for k in keys[:4]}))
    assert set(left) == {"RagserveNoReadyReplicas"}


def test_rules_select_the_release_namespace_only() -> None:
    for namespace in (NAMESPACE, promql.TEST_NAMESPACE):
        for name, rule in rules(promql.rendered_rule_groups(namespace=namespace)).items():
            sels = promql.selectors(rule["expr"])
            assert sels and {n for n, _ in sels} == promql.metric_names(rule["expr"]), name
            assert all(f'namespace="{namespace}"' in m for _, m in sels), name


def test_rules_query_emitted_metrics() -> None:
    known = ragserve_metrics() | ray_serve_metrics() | vllm_metrics() | promql.dcgm_default_counters()
    for name, rule in rules(promql.rendered_rule_groups()).items():
        assert promql.metric_names(rule["expr"]) <= known, name
        assert not promql.is_gpu_expression(rule["expr"]), "alerts work without GPUs"
