"""Dashboards and alerts against a real Prometheus scraping the running app.

The app runs on a local Ray (embedder pool, vLLM CPU generator, router, Milvus Lite); Debian's `prometheus`
scrapes the Ray node's metrics port exactly as the chart's PodMonitor does (same metric relabelings, a
`namespace` label like the operator adds); the test sends a traffic mix, then evaluates every PromQL
expression of every dashboard panel and alert rule through the HTTP API.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ragserve_testkit import free_port
from tests.deploy import promql
from tests.integration.serving import AUTH, BASE, OFF_TOPIC, QUESTION, Served, post

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
NAMESPACE = "ragserve-test"


@pytest.fixture(scope="module")
def app(served: Served, ray_cluster, corpus_dir: Path) -> dict[str, Any]:
    """The session's app: documents sent through the API, so the router's ingestion counters move too."""
    docs = [
        {"source": f"prometheus/{rel}", "text": (corpus_dir / rel).read_text()}
        for rel in ("reference/index.md", "reference/metric.md", "about/limitations.md")
    ]
    res = post("/v1/documents", {"documents": docs}, timeout=300)
    assert res.status_code == 200, res.text
    assert res.json()["chunks_new"] > 0
    node = ray_cluster.nodes()[0]
    return {"metrics_target": f"127.0.0.1:{node['MetricsExportPort']}"}


def scrape_config(target: str, rules_file: Path) -> dict[str, Any]:
    """What the PodMonitor asks of the operator, for one static target."""
    return {
        # Ray's agent can take over a second to answer on a busy 2-core box: a 1 s timeout would drop scrapes.
        "global": {"scrape_interval": "3s", "scrape_timeout": "3s", "evaluation_interval": "3s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": "ray",
                "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE}}],
                "metric_relabel_configs": promql.podmonitor_relabelings(),
            }
        ],
    }


@pytest.fixture(scope="module")
def prometheus(app: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is required: scripts/install-prometheus.sh"
    work = tmp_path_factory.mktemp("prometheus")
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": promql.rendered_rule_groups(promql.TRIPPED_THRESHOLDS)}))
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(app["metrics_target"], rules)))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def send_traffic() -> dict[str, int]:
    """Every route the dashboards look at: queries (plain and streamed), searches (a concurrent burst, so
    the embedder batches), a streamed chat completion, and rejected input."""
    sent: dict[str, int] = {}

    def call(path: str, body: dict[str, Any]) -> int:
        with httpx.Client(timeout=180, headers=AUTH) as client:
            if body.get("stream"):
                with client.stream("POST", BASE + path, json=body) as res:
                    for _ in res.iter_lines():
                        pass
                    status = res.status_code
            else:
                status = client.post(BASE + path, json=body).status_code
        sent[f"{path} {status}"] = sent.get(f"{path} {status}", 0) + 1
        return status

    # The burst is for the embedder's batching. Without the reranker: its CPU cross-encoder would take the
    # 24 searches one batch at a time on two cores, past the test app's 5-s reranker timeout (a 503 by
    # design). The queries below still rerank, so the rerank stage has its series.
    searches = [{"query": f"{QUESTION} ({i})", "top_k": 5, "rerank": False} for i in range(24)]
    with cf.ThreadPoolExecutor(12) as pool:
        assert set(pool.map(lambda b: call("/v1/search", b), searches)) == {200}
    for top_k in (2, 3, 5):
        assert call("/v1/query", {"question": QUESTION, "top_k": top_k}) == 200
    assert call("/v1/query", {"question": QUESTION, "stream": True}) == 200
    assert call("/v1/query", {"question": OFF_TOPIC}) == 200  # abstains: the abstention panel moves
    chat = {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "max_tokens": 16}
    assert call("/v1/chat/completions", chat) == 200
    assert call("/v1/search", {"query": "", "top_k": 3}) == 422
    return sent


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    res = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=30)
    body = res.json()
    assert body.get("status") == "success", f"{expr!r}: {body.get('error', body)}"
    return list(body["data"]["result"])


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def wait_for(url: str, expr: str, predicate: Any, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = instant(url, expr)
        if predicate(result) or time.monotonic() > deadline:
            return result
        time.sleep(1)


def sent_requests(prometheus: str) -> float:
    routes = "/v1/(query|search|chat/completions)"
    expr = f'sum(ragserve_requests_total{{namespace="{NAMESPACE}",route=~"{routes}"}})'
    result = instant(prometheus, expr)
    return float(result[0]["value"][1]) if result else 0.0


def test_every_dashboard_and_alert_expression_returns_data(app, prometheus: str) -> None:
    # Two waves: the first creates every series, the second moves them while Prometheus watches, so each
    # rate() window holds a real increase (a series first seen at its final value has a rate of 0).
    expected = sent_requests(prometheus)  # the shared app may have served other tests already
    for _wave in range(2):
        sent = send_traffic()
        expected += sum(n for key, n in sent.items() if not key.startswith("/v1/documents"))
        deadline = time.monotonic() + 90
        while sent_requests(prometheus) < expected and time.monotonic() < deadline:
            time.sleep(1)
        assert sent_requests(prometheus) >= expected, (sent, expected)
    # One more scrape after the last counter moved: each rate() window then ends on the final values.
    moved_at = time.time()
    scraped = wait_for(
        prometheus, 'max(timestamp(up{job="ray"}))', lambda r: r and float(r[0]["value"][1]) > moved_at
    )
    assert scraped and float(scraped[0]["value"][1]) > moved_at, "Prometheus stopped scraping the app"

    report: dict[str, Any] = {"panels": [], "alerts": [], "gpu": []}
    dcgm = promql.dcgm_default_counters()
    failures = []
    for dashboard, title, expr in promql.dashboard_expressions():
        if promql.is_gpu_expression(expr):
            unknown = promql.metric_names(expr) - dcgm
            report["gpu"].append({"dashboard": dashboard, "panel": title, "unknown": sorted(unknown)})
            if unknown:
                failures.append(f"{dashboard} / {title}: not in DCGM's default counters: {sorted(unknown)}")
            continue
        result = instant(prometheus, expr)
        ok = bool(result) and has_finite_value(result)
        report["panels"].append({"dashboard": dashboard, "panel": title, "series": len(result), "ok": ok})
        if not ok:
            failures.append(f"{dashboard} / {title}: no data for {expr}")

    # Alerts, rendered with thresholds every healthy signal crosses: each must return data here (it can
    # fire on what this app emits), and Prometheus must have loaded and evaluated each rule without error.
    for group in promql.rendered_rule_groups(promql.TRIPPED_THRESHOLDS):
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            if promql.is_gpu_expression(rule["expr"]):
                unknown = promql.metric_names(rule["expr"]) - dcgm
                report["gpu"].append({"rule": name, "unknown": sorted(unknown)})
                if unknown:
                    failures.append(f"rule {name}: not in DCGM's default counters: {sorted(unknown)}")
                continue
            result = instant(prometheus, rule["expr"])
            report["alerts"].append({"rule": name, "series": len(result), "ok": bool(result)})
            if not result:
                failures.append(f"rule {name}: no data for {rule['expr']}")
    loaded = httpx.get(prometheus + "/api/v1/rules", timeout=30).json()["data"]["groups"]
    unhealthy = [
        (r["name"], r.get("lastError")) for g in loaded for r in g["rules"] if r.get("health") == "err"
    ]
    assert not unhealthy, unhealthy

    counts = {
        "panel expressions": len(report["panels"]),
        "panels with data": sum(p["ok"] for p in report["panels"]),
        "rule expressions": len(report["alerts"]),
        "rules with data": sum(a["ok"] for a in report["alerts"]),
        "gpu expressions (DCGM names checked)": len(report["gpu"]),
    }
    report["counts"] = counts
    print(json.dumps(counts))
    if out := os.environ.get("RAGSERVE_PROMQL_REPORT"):
        Path(out).write_text(json.dumps(report, indent=2))
    assert not failures, "\n".join(failures)
    assert report["panels"] and report["alerts"] and report["gpu"]


def test_router_metrics_endpoint_shows_the_node_exposition(app) -> None:
    text = httpx.get(BASE + "/metrics", timeout=30).text
    assert "ray_ragserve_requests_total{" in text and "ray_serve_" in text
    assert "ray_vllm_num_requests_running" in text
