"""The chart's PromQL, as data: every dashboard target, every alert rule, the PodMonitor's metric relabelings.

Shared by the offline checks in tests/deploy (promtool parses every expression; names checked against the
code and the exporters) and tests/integration/test_prometheus.py (a real Prometheus scrapes the running app
with the same relabelings and evaluates every expression). Import it as ``from tests.deploy import promql``
(the repository root is on sys.path under pytest). Needs helm (``.tools/bin/helm`` or on PATH) for the
rendered objects; the dashboards and the DCGM list are plain files.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "ragserve"
DASHBOARDS = CHART / "dashboards"
DCGM_COUNTERS = Path(__file__).resolve().parent / "data" / "dcgm-default-counters.csv"
RELEASE = "ragserve"

# What the integration test puts in place of the Grafana variables (the only ones the dashboards may use).
VARIABLES = {"namespace": ".*", "deployment": ".*", "__rate_interval": "1m"}
# The `namespace` label the integration test's Prometheus adds to its target; the alert rules select the
# release namespace, so they are rendered for this one by default.
TEST_NAMESPACE = "ragserve-test"
# Alert thresholds (chart values paths) that a healthy app crosses, so that every rule returns data.
TRIPPED_THRESHOLDS: dict[str, Any] = {
    "alerts.highErrorRate.threshold": -1,
    "alerts.latencySLO.p99Seconds": -1,
    "alerts.queueGrowing.minQueued": -1,
    "alerts.queueGrowing.growthPerSecond": -1000000,
    "alerts.generatorWaiting.threshold": -1,
    "alerts.noReadyReplicas.minHealthy": 1000000,
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
_KEYWORDS |= {"group_left", "group_right", "start", "end"}


# ---- dashboards ---------------------------------------------------------------------------------------
def dashboards() -> dict[str, dict[str, Any]]:
    """File stem (e.g. ``ragserve-overview``) -> the dashboard JSON."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def variables_in(expr: str) -> set[str]:
    """Grafana variables an expression refers to ($x, ${x}, ${x:fmt}, [[x]])."""
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """The expression with the Grafana variables replaced (by VARIABLES unless given)."""
    values = VARIABLES if values is None else values
    return _VARIABLE.sub(lambda m: values[next(g for g in m.groups() if g)], expr)


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, raw expression) for every target; a panel with several targets gets its
    refId appended to the title."""
    out = []
    for name, dash in dashboards().items():
        for panel in dash["panels"]:
            targets = panel.get("targets", [])
            for t in targets:
                title = panel["title"] if len(targets) == 1 else f"{panel['title']} [{t['refId']}]"
                out.append((name, title, t["expr"]))
    return out


def dashboard_expressions() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression with $namespace/$deployment -> ".*", $__rate_interval -> 1m)."""
    return [(d, title, substitute(expr)) for d, title, expr in dashboard_targets()]


# ---- rendered chart -----------------------------------------------------------------------------------
def helm() -> str:
    local = REPO / ".tools" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if not found:
        raise RuntimeError("helm not found: run scripts/install-deploy-tools.sh")
    return found


def render(
    *, sets: Mapping[str, Any] | None = None, namespace: str = RELEASE, show_only: str | None = None
) -> list[dict[str, Any]]:
    """`helm template` of the chart with `--set-json key=<json value>` for each entry of `sets`."""
    cmd = [helm(), "template", RELEASE, str(CHART), "--namespace", namespace]
    for key, value in (sets or {}).items():
        cmd += ["--set-json", f"{key}={json.dumps(value)}"]
    if show_only:
        cmd += ["--show-only", show_only]
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def rendered_rule_groups(
    overrides: Mapping[str, Any] | None = None, namespace: str = TEST_NAMESPACE
) -> list[dict[str, Any]]:
    """`spec.groups` of the PrometheusRule rendered with alerts enabled (every rule on) and the given
    values (e.g. TRIPPED_THRESHOLDS), for a release in `namespace`; a Prometheus rule file's `groups`."""
    sets = {"alerts.enabled": True, **(overrides or {})}
    (rule,) = render(sets=sets, namespace=namespace, show_only="templates/prometheusrule.yaml")
    return list(rule["spec"]["groups"])


def rendered_podmonitor() -> dict[str, Any]:
    (pm,) = render(sets={"metrics.podMonitor.enabled": True}, show_only="templates/podmonitor.yaml")
    return pm


_RELABEL_KEYS = {
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "regex": "regex",
    "replacement": "replacement",
    "separator": "separator",
    "modulus": "modulus",
    "action": "action",
}


def podmonitor_relabelings() -> list[dict[str, Any]]:
    """The PodMonitor's metricRelabelings as Prometheus `metric_relabel_configs` entries."""
    (endpoint,) = rendered_podmonitor()["spec"]["podMetricsEndpoints"]
    out = []
    for rule in endpoint.get("metricRelabelings", []):
        converted = {_RELABEL_KEYS[k]: v for k, v in rule.items()}
        if "action" in converted:
            converted["action"] = str(converted["action"]).lower()
        out.append(converted)
    return out


def relabel_name(name: str, relabelings: list[dict[str, Any]]) -> str:
    """What the `__name__`-only replace rules make of a metric name (as Prometheus applies them)."""
    for rule in relabelings:
        if rule.get("action", "replace") != "replace" or rule.get("source_labels") != ["__name__"]:
            continue
        m = re.fullmatch(rule.get("regex", "(.*)"), name)
        if m and rule.get("target_label") == "__name__":
            name = m.expand(re.sub(r"\$(\d+)|\$\{(\d+)\}", r"\\g<\1\2>", rule.get("replacement", "$1")))
    return name


# ---- metric names -------------------------------------------------------------------------------------
@functools.cache
def dcgm_default_counters() -> frozenset[str]:
    """DCGM fields enabled in dcgm-exporter's default counters (the vendored etc/default-counters.csv)."""
    names = set()
    for line in DCGM_COUNTERS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split(",")[0].strip())
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables allowed: they sit in strings/ranges)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        rest = text[m.end() :].lstrip()
        if m.group() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(m.group())
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of every `name{...}` selector of an expression."""
    return re.findall(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^{}]*)\}", expr)


def is_gpu_expression(expr: str) -> bool:
    """Whether the expression reads DCGM exporter metrics (which a CPU-only test run cannot have)."""
    return any(name.startswith("DCGM_") for name in metric_names(expr))
