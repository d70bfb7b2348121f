"""The chart's alerts, run by `promtool test rules` on synthetic series: each fires only after its `for:`,
only on the condition it documents, only for the release namespace, with its labels and rendered summary.

The series use the names Prometheus stores after the PodMonitor's relabelings (ragserve_*, vllm:*,
ray_serve_*); test_prometheus.py (integration) shows the same expressions return data from the real app.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import promql
from tests.deploy.conftest import NAMESPACE
from tests.deploy.test_prometheusrule import rules

APP = 'application="ragserve"'
OTHER = 'namespace="other-team"'  # another release's series: never alerts in this one


def series(
    metric: str, labels: str, values: str, namespace: str = f'namespace="{NAMESPACE}"'
) -> dict[str, str]:
    return {"series": f"{metric}{{{namespace},{labels}}}", "values": values}


def silent_then_firing(
    name: str, silent_at: str, firing_at: str, labels: dict[str, str], summary: str, description: str
) -> list[dict[str, Any]]:
    """promtool expectations: no alert at `silent_at` (pending within `for:`), exactly this one at
    `firing_at`, with its labels and rendered annotations."""
    expected = {
        "exp_labels": {"namespace": NAMESPACE, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }
    return [
        {"eval_time": silent_at, "alertname": name, "exp_alerts": []},
        {"eval_time": firing_at, "alertname": name, "exp_alerts": [expected]},
    ]


def cases(descriptions: dict[str, str]) -> list[dict[str, Any]]:
    """One promtool test per alert: a firing case next to near misses, evaluated before and after `for:`."""
    requests = "ragserve_requests_total"
    bucket = "ragserve_stage_latency_seconds_bucket"
    queued = "ray_serve_deployment_queued_queries"
    healthy = "ray_serve_deployment_replica_healthy"
    return [
        {  # 1 of 11 requests is a 503 (9.1 % > 5 %); the other namespace is all errors
            "input_series": [
                series(requests, f'{APP},route="/v1/query",status="200"', "0+600x40"),
                series(requests, f'{APP},route="/v1/query",status="503"', "0+60x40"),
                series(requests, f'{APP},route="/v1/query",status="500"', "0+60x40", namespace=OTHER),
            ],
            "alert_rule_test": silent_then_firing(
                "RagserveHighErrorRate",
                "4m",
                "20m",
                {"application": "ragserve", "severity": "critical"},
                f"ragserve answers 9.091% of its requests with 5xx in {NAMESPACE}.",
                descriptions["RagserveHighErrorRate"],
            ),
        },
        {  # 2 % errors, and traffic without any 5xx series at all (the `or 0 *` branch): below the threshold
            "input_series": [
                series(requests, f'{APP},route="/v1/query",status="200"', "0+980x40"),
                series(requests, f'{APP},route="/v1/query",status="500"', "0+20x40"),
                series(requests, 'application="other-app",route="/v1/search",status="200"', "0+100x40"),
            ],
            "alert_rule_test": [{"eval_time": "30m", "alertname": "RagserveHighErrorRate", "exp_alerts": []}],
        },
        {  # /v1/query answers in 30-60 s (p99 59.7 s > 30 s); /v1/search is fast; ingestion is exempt
            "input_series": [
                *(
                    series(bucket, f'{APP},stage="total",route="/v1/query",le="{le}"', v)
                    for le, v in (("1", "0x40"), ("30", "0x40"), ("60", "0+10x40"), ("+Inf", "0+10x40"))
                ),
                *(
                    series(bucket, f'{APP},stage="total",route="/v1/search",le="{le}"', "0+100x40")
                    for le in ("1", "30", "60", "+Inf")
                ),
                *(
                    series(bucket, f'{APP},stage="total",route="/v1/documents",le="{le}"', v)
                    for le, v in (("1", "0x40"), ("30", "0x40"), ("60", "0x40"), ("+Inf", "0+5x40"))
                ),
                series(bucket, f'{APP},stage="embed",route="/v1/search",le="+Inf"', "0+100x40"),
            ],
            "alert_rule_test": silent_then_firing(
                "RagserveLatencySLOBreach",
                "8m",
                "25m",
                {"application": "ragserve", "route": "/v1/query", "severity": "warning"},
                f"ragserve p99 latency of /v1/query is 59.7s in {NAMESPACE}.",
                descriptions["RagserveLatencySLOBreach"],
            ),
        },
        {  # Generator's queue grows by 2 a minute; Embedder's stands at 50 (above the floor, not growing)
            "input_series": [
                series(queued, f'{APP},deployment="Generator",handle="h1"', "0+1x60"),
                series(queued, f'{APP},deployment="Generator",handle="h2"', "0+1x60"),
                series(queued, f'{APP},deployment="Embedder",handle="h1"', "50x60"),
                series(queued, f'{APP},deployment="Generator",handle="h1"', "0+5x60", namespace=OTHER),
            ],
            "alert_rule_test": silent_then_firing(
                "RagserveQueueGrowing",
                "15m",
                "30m",
                {"application": "ragserve", "deployment": "Generator", "severity": "warning"},
                f"Requests queued for Generator keep growing (60) in {NAMESPACE}.",
                descriptions["RagserveQueueGrowing"],
            ),
        },
        {  # 12 requests wait in one model's engines (> 8), 5 in another's
            "input_series": [
                series("vllm:num_requests_waiting", 'model_name="llama",engine="0"', "7x40"),
                series("vllm:num_requests_waiting", 'model_name="llama",engine="1"', "5x40"),
                series("vllm:num_requests_waiting", 'model_name="small",engine="0"', "5x40"),
            ],
            "alert_rule_test": silent_then_firing(
                "RagserveGeneratorWaitingHigh",
                "5m",
                "20m",
                {"model_name": "llama", "severity": "warning"},
                f"vLLM has 12 requests waiting for llama in {NAMESPACE}.",
                descriptions["RagserveGeneratorWaitingHigh"],
            ),
        },
        {  # Generator: no healthy replica; Embedder: one of two healthy (enough)
            "input_series": [
                series(healthy, f'{APP},deployment="Generator",replica="g1"', "0x40"),
                series(healthy, f'{APP},deployment="Embedder",replica="e1"', "1x40"),
                series(healthy, f'{APP},deployment="Embedder",replica="e2"', "0x40"),
            ],
            "alert_rule_test": silent_then_firing(
                "RagserveNoReadyReplicas",
                "10m",
                "20m",
                {"application": "ragserve", "deployment": "Generator", "severity": "critical"},
                f"Serve deployment Generator has 0 healthy replicas in {NAMESPACE}.",
                descriptions["RagserveNoReadyReplicas"],
            ),
        },
    ]


def run_rule_tests(
    promtool: str, tmp_path: Path, tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    groups = promql.rendered_rule_groups(namespace=NAMESPACE)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    for t in tests:
        t.setdefault("interval", "1m")
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def descriptions() -> dict[str, str]:
    return {n: r["annotations"]["description"] for n, r in rules(promql.rendered_rule_groups()).items()}


def test_each_alert_fires_after_its_for_and_only_on_its_condition(promtool: str, tmp_path: Path) -> None:
    expected = descriptions()
    tests = cases(expected)
    assert {t["alert_rule_test"][0]["alertname"] for t in tests} == set(expected)
    proc = run_rule_tests(promtool, tmp_path, tests)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_wrong_expectation_fails(promtool: str, tmp_path: Path) -> None:
    """The harness can fail: the error-rate case expected at 4 minutes, before its 5-minute `for:` is over."""
    tests = cases(descriptions())[:1]
    silent, firing = tests[0]["alert_rule_test"]
    silent["exp_alerts"] = firing["exp_alerts"]
    proc = run_rule_tests(promtool, tmp_path, tests)
    assert proc.returncode != 0
    assert "RagserveHighErrorRate" in proc.stdout + proc.stderr
