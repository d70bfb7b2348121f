"""Grafana dashboards (dashboards/*.json, templates/dashboards.yaml): generated without drift, a sound Grafana
model, only the allowed variables, every selector filtered, every expression parsed by promtool, and every
metric name one that ragserve's code, Ray Serve, vLLM or dcgm-exporter's default counters really emit."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.conftest import CHART, load_script

DASHBOARDS = promql.dashboards()
ALLOWED_VARIABLES = {"namespace", "deployment", "__rate_interval"}
# Ray Serve series without Serve's deployment label (HTTP ingress, from HAProxy): filtered by namespace only.
PROXY_METRICS = {
    "ray_serve_num_http_requests_total",
    "ray_serve_http_request_latency_ms_bucket",
    "ray_serve_num_ongoing_http_requests",
}


def has_deployment_label(name: str) -> bool:
    return name.startswith("ragserve_") or (name.startswith("ray_serve_") and name not in PROXY_METRICS)


# ---- what the code and the exporters emit (names as Prometheus stores them after the PodMonitor) -------
def _exported(kind: str, name: str) -> set[str]:
    if kind == "counter":
        return {name if name.endswith("_total") else f"{name}_total"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def ragserve_metrics() -> set[str]:
    from ragserve.observability import metrics

    defined = [m for m in vars(metrics).values() if isinstance(m, metrics._Metric)]
    return {n for m in defined for n in _exported(m.kind.lower(), m.name)}


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def ray_serve_metrics() -> set[str]:
    """`ray.util.metrics` / `ray.serve.metrics` definitions in Ray Serve's source, as Ray's agent exports
    them (prefix ray_, counters with _total)."""
    pattern = re.compile(r"metrics\.(Gauge|Counter|Histogram)\(\s*(?:name=)?f?\"(serve_[^\"]+)\"")
    names = set()
    for path in (_package_dir("ray") / "serve").rglob("*.py"):
        for kind, name in pattern.findall(path.read_text(encoding="utf-8")):
            for protocol in ("http", "grpc"):
                names |= _exported(kind.lower(), "ray_" + name.replace("{protocol_name}", protocol))
    return names


def vllm_metrics() -> set[str]:
    """vLLM's PrometheusStatLogger definitions (vllm:*); through Ray they arrive as ray_vllm_* and the
    PodMonitor's relabeling restores these names (checked in test_podmonitor.py)."""
    pattern = re.compile(r"_(gauge|counter|histogram)_cls\(\s*name=\"(vllm:[^\"]+)\"")
    text = (_package_dir("vllm") / "v1" / "metrics" / "loggers.py").read_text(encoding="utf-8")
    return {n for kind, name in pattern.findall(text) for n in _exported(kind, name)}


# ---- generation and the Grafana model -----------------------------------------------------------------
def test_dashboards_are_generated_without_drift() -> None:
    gen = load_script("gen_dashboards")
    stale = [p.name for p, text in gen.outputs().items() if not p.exists() or p.read_text("utf-8") != text]
    assert not stale, f"run .venv/bin/python deploy/scripts/gen_dashboards.py (stale: {stale})"
    assert {p.name for p in (CHART / "dashboards").glob("*")} == {p.name for p in gen.outputs()}


def test_the_four_dashboards_ship() -> None:
    assert set(DASHBOARDS) == {"ragserve-overview", "ragserve-serve", "ragserve-vllm", "ragserve-gpu"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_model(name: str) -> None:
    d = DASHBOARDS[name]
    assert d["uid"] == name and d["title"].startswith("ragserve / ") and "ragserve" in d["tags"]
    assert 39 <= d["schemaVersion"] < 42
    panels = d["panels"]
    assert 6 <= len(panels) <= 14  # one screen or two: more means a dashboard to split
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and p["description"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables(name: str) -> None:
    d = DASHBOARDS[name]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "deployment"}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    used = {n for d, _, e in promql.dashboard_targets() if d == name for n in promql.metric_names(e)}
    for var in ("namespace", "deployment"):
        v = variables[var]
        assert v["type"] == "query" and v["includeAll"] is True and v["allValue"] == ".*", var
        assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        m = re.fullmatch(r"label_values\(([\w:]+)(\{[^}]*\})?, (\w+)\)", v["query"]["query"])
        assert m and m.group(3) == var, v["query"]
        assert m.group(1) in used, f"{var} lists values of {m.group(1)}, which no panel of {name} queries"
        assert v["definition"] == v["query"]["query"]
        assert promql.variables_in(v["query"]["query"]) <= {"namespace"}


@pytest.mark.parametrize(("dashboard", "title", "expr"), promql.dashboard_targets())
def test_targets_filter_and_use_only_allowed_variables(dashboard: str, title: str, expr: str) -> None:
    assert promql.variables_in(expr) <= ALLOWED_VARIABLES, expr
    assert "$__" not in promql.substitute(expr), "no other Grafana macros"
    sels = promql.selectors(expr)
    assert {name for name, _ in sels} == promql.metric_names(expr), f"a metric without a selector: {expr}"
    for name, matchers in sels:
        assert 'namespace=~"$namespace"' in matchers, f"{name} not filtered by namespace"
        if has_deployment_label(name):
            assert 'deployment=~"$deployment"' in matchers, f"{name} not filtered by deployment"
        else:
            assert "deployment" not in matchers, f"{name} has no deployment label"
    if "rate(" in expr:
        assert "[$__rate_interval]" in expr and not re.search(r"\[\d+[smh]\]", expr), expr


def test_expression_list_substitutes_the_variables() -> None:
    exprs = promql.dashboard_expressions()
    assert len(exprs) == len(promql.dashboard_targets()) > 40
    assert not [e for _, _, e in exprs if "$" in e]
    assert all('namespace=~".*"' in e for _, _, e in exprs)


def _check_parses(promtool: str, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"ragserve:dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "exprs.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_every_expression_parses(promtool: str, tmp_path: Path) -> None:
    """promtool parses PromQL offline: each expression (variables substituted) as a recording rule."""
    exprs = [e for _, _, e in promql.dashboard_expressions()]
    proc = _check_parses(promtool, exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout
    broken = _check_parses(promtool, ["sum by (le (rate(ragserve_ttft_seconds_bucket[1m]))"], tmp_path)
    assert broken.returncode != 0, "promtool must reject a broken expression"


def test_metric_names_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{x="b{c}"}[5m] offset 1h))) '
        '/ on (job) group_left (instance) vllm:b * 1e9 > bool 2 and absent(c) or d{e=~"$namespace"}'
    )
    assert promql.metric_names(expr) == {"a_bucket", "vllm:b", "c", "d"}
    assert (
        promql.variables_in('x{a=~"$namespace", b=~"${deployment}"}[$__rate_interval]') == ALLOWED_VARIABLES
    )
    assert promql.is_gpu_expression("avg(DCGM_FI_DEV_GPU_UTIL) / sum(vllm:x)")
    assert not promql.is_gpu_expression('sum(ragserve_requests_total{route="DCGM_FI_DEV_GPU_UTIL"})')


# ---- the names exist ------------------------------------------------------------------------------------
def test_every_name_is_emitted_by_the_code_or_an_exporter() -> None:
    """Dashboards only query metrics ragserve defines, Ray Serve / vLLM define in their source, or
    dcgm-exporter enables by default."""
    known = ragserve_metrics() | ray_serve_metrics() | vllm_metrics() | promql.dcgm_default_counters()
    unknown = {
        (d, title, name)
        for d, title, expr in promql.dashboard_targets()
        for name in promql.metric_names(expr) - known
    }
    assert not unknown, sorted(unknown)


def test_contract_scanners_find_the_definitions() -> None:
    """The source scans above do find what they look for (else the previous test proves nothing)."""
    assert {"ragserve_requests_total", "ragserve_stage_latency_seconds_bucket"} <= ragserve_metrics()
    assert {
        "ray_serve_deployment_replica_healthy",
        "ray_serve_num_http_requests_total",
        "ray_serve_http_request_latency_ms_bucket",
        "ray_serve_deployment_request_counter_total",
    } <= ray_serve_metrics()
    assert {"vllm:kv_cache_usage_perc", "vllm:generation_tokens_total"} <= vllm_metrics()
    assert "vllm:time_per_output_token_seconds_bucket" not in vllm_metrics()  # renamed in vLLM v1


def test_gpu_dashboard_uses_dcgm_default_counters() -> None:
    counters = promql.dcgm_default_counters()
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"} <= counters
    assert "DCGM_FI_DEV_POWER_VIOLATION" not in counters, "commented-out fields are not defaults"
    gpu = [e for d, _, e in promql.dashboard_targets() if promql.is_gpu_expression(e)]
    assert gpu and all(d == "ragserve-gpu" for d, _, e in promql.dashboard_targets() if e in gpu)
    used = set().union(*(promql.metric_names(e) for e in gpu))
    assert {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
    } <= used
    assert {n for n in used if n.startswith("DCGM_")} <= counters


# ---- the ConfigMaps ---------------------------------------------------------------------------------------
def test_dashboard_configmaps(rendered: dict[str, list[dict[str, Any]]]) -> None:
    cms = [d for d in rendered["monitoring"] if d["kind"] == "ConfigMap"]
    assert len(cms) == len(DASHBOARDS)
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "ragserve"}
        assert len(cm["metadata"]["name"]) <= 63
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == DASHBOARDS[key.removesuffix(".json")]
    assert not [d for d in rendered["default"] if d["kind"] == "ConfigMap"]


def test_dashboard_label_is_configurable(helm_template: Any) -> None:
    from tests.deploy.conftest import docs_of

    docs = docs_of(helm_template("--set", "dashboards.enabled=true", "--set", "dashboards.label=dash").stdout)
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cms and all(cm["metadata"]["labels"]["dash"] == "1" for cm in cms)
