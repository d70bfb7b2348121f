"""templates/podmonitor.yaml: the metric relabelings that restore ragserve's and vLLM's names, as the
prometheus-operator gets them and as a plain Prometheus config (promtool check config)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import promql
from tests.deploy.conftest import one
from tests.deploy.test_dashboards import ragserve_metrics, vllm_metrics

RULES = [
    {
        "sourceLabels": ["__name__"],
        "regex": "ray_(ragserve_.+)",
        "targetLabel": "__name__",
        "replacement": "$1",
    },
    {
        "sourceLabels": ["__name__"],
        "regex": "ray_vllm_(.+)",
        "targetLabel": "__name__",
        "replacement": "vllm:$1",
    },
]


def test_podmonitor_carries_the_metric_relabelings(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (endpoint,) = one(rendered["monitoring"], "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["metricRelabelings"] == RULES
    assert promql.podmonitor_relabelings() == [
        {
            "source_labels": ["__name__"],
            "regex": r["regex"],
            "target_label": "__name__",
            "replacement": r["replacement"],
        }
        for r in RULES
    ]


def test_relabelings_restore_the_contract_names() -> None:
    """Ray exports ragserve_x as ray_ragserve_x and vllm:x as ray_vllm_x (':' sanitized to '_')."""
    relabel = promql.podmonitor_relabelings()
    for name in ragserve_metrics() | vllm_metrics():
        assert promql.relabel_name("ray_" + name.replace(":", "_"), relabel) == name
    for kept in ("ray_serve_deployment_replica_healthy", "ray_node_cpu_utilization", "ray_vllmx"):
        assert promql.relabel_name(kept, relabel) == kept


def test_relabelings_are_a_valid_prometheus_config(promtool: str, tmp_path: Path) -> None:
    config = {
        "scrape_configs": [
            {
                "job_name": "ray",
                "static_configs": [{"targets": ["127.0.0.1:8080"], "labels": {"namespace": "ragserve"}}],
                "metric_relabel_configs": promql.podmonitor_relabelings(),
            }
        ]
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_relabelings_can_be_emptied(helm_template: Any) -> None:
    from tests.deploy.conftest import docs_of

    docs = docs_of(
        helm_template(
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set-json",
            "metrics.podMonitor.metricRelabelings=[]",
        ).stdout
    )
    assert "metricRelabelings" not in one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
