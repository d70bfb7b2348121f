"""Node drains (templates/pdb.yaml and the worker groups' shape): with default values a drain leaves a pod
that serves the API, each budget is one Kubernetes can evaluate for KubeRay's pods, and the CPU workers
are spread over nodes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import SCENARIOS, docs_of, serve_app, worker_group


def budgets(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """PodDisruptionBudgets by the component they select (head, cpu-worker, gpu-worker)."""
    return {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]: d["spec"]
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }


def router_min_replicas(docs: list[dict[str, Any]]) -> int:
    (router,) = [d for d in serve_app(docs)["deployments"] if d["name"] == "Router"]
    return int(router["autoscaling_config"]["min_replicas"])


def test_defaults_keep_a_router_pod_through_a_drain(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Routers run on the CPU group only (GPU pods advertise just the generator's CPUs). With defaults that
    group has at least two pods and its budget lets a drain take one while keeping at least one."""
    docs = rendered["default"]
    cpu = worker_group(docs, "cpu")
    assert cpu is not None
    assert cpu["replicas"] >= 2 and cpu["minReplicas"] >= 2, "one CPU pod: a drain takes every router"
    assert router_min_replicas(docs) >= 2, "two routers, so each of two pods can hold one"
    budget = budgets(docs)["cpu-worker"]
    assert 1 <= budget["minAvailable"] < cpu["minReplicas"], budget  # keeps one, and a drain can proceed


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_budgets_are_integer_min_available(rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    """KubeRay's pods belong to a RayCluster, which has no scale subresource: Kubernetes evaluates only an
    integer minAvailable for them (with maxUnavailable or a percentage it allows no eviction at all)."""
    for component, spec in budgets(rendered[scenario]).items():
        assert "maxUnavailable" not in spec, (scenario, component)
        assert isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= 1, (scenario, component)
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "a broken pod must not hold a drain up"


def test_each_group_budget_keeps_min_replicas_less_max_unavailable(helm_template: Any) -> None:
    docs = docs_of(
        helm_template(
            "--set",
            "app.generator.deployment.autoscaling_config.min_replicas=3",
            "--set",
            "app.generator.deployment.autoscaling_config.max_replicas=4",
            "--set",
            "workers.cpu.minReplicas=4",
            "--set",
            "workers.cpu.replicas=4",
        ).stdout
    )
    assert {k: v["minAvailable"] for k, v in budgets(docs).items()} == {
        "cpu-worker": 3,
        "gpu-worker": 2,
        "head": 1,
    }


def test_a_group_of_one_pod_gets_no_budget(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The default generator has one replica (one GPU pod): a budget would block every drain of its node,
    so there is none (docs/kubernetes.md says to run two for generation through drains)."""
    gpu = worker_group(rendered["default"], "gpu")
    assert gpu is not None and gpu["minReplicas"] == 1
    assert "gpu-worker" not in budgets(rendered["default"])


def test_head_budget_only_without_gcs_fault_tolerance(
    rendered: dict[str, list[dict[str, Any]]], helm_template: Any
) -> None:
    """Without GCS fault tolerance the head's eviction restarts the whole cluster: its budget blocks that.
    With it, workers keep serving while the head restarts, so a drain may take the head."""
    assert budgets(rendered["default"])["head"]["minAvailable"] == 1
    assert "head" not in budgets(rendered["gcs-fault-tolerance"])
    off = docs_of(helm_template("--set", "podDisruptionBudget.protectHead=false").stdout)
    assert "head" not in budgets(off)
    assert not budgets(rendered["minimal-cpu"]), "podDisruptionBudget.enabled: false renders none"


def pod_template(docs: list[dict[str, Any]], group: str) -> dict[str, Any]:
    g = worker_group(docs, group)
    assert g is not None, group
    return g["template"]


def test_cpu_workers_spread_over_nodes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    cpu, gpu = pod_template(docs, "cpu"), pod_template(docs, "gpu")
    (c,) = cpu["spec"]["topologySpreadConstraints"]
    assert (c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"]) == (
        "kubernetes.io/hostname",
        1,
        "DoNotSchedule",
    )
    # Cordoned (draining) and tainted nodes are not domains, or a drain would leave the pod pending.
    assert c["nodeTaintsPolicy"] == "Honor" and c["nodeAffinityPolicy"] == "Honor"
    assert c["labelSelector"]["matchLabels"].items() <= cpu["metadata"]["labels"].items()
    assert c["matchLabelKeys"] == ["ray.io/cluster"], "each RayCluster of an upgrade spreads on its own"
    (g,) = gpu["spec"]["topologySpreadConstraints"]
    assert g["whenUnsatisfiable"] == "ScheduleAnyway"
    assert g["labelSelector"]["matchLabels"].items() <= gpu["metadata"]["labels"].items()
    assert g["labelSelector"] != c["labelSelector"]


def test_spread_can_be_turned_off(helm_template: Any) -> None:
    docs = docs_of(helm_template("--set", "workers.cpu.topologySpread.whenUnsatisfiable=").stdout)
    assert "topologySpreadConstraints" not in pod_template(docs, "cpu")["spec"]
    bad = helm_template("--set", "workers.cpu.topologySpread.whenUnsatisfiable=Never", check=False)
    assert bad.returncode != 0 and "/workers/cpu/topologySpread/whenUnsatisfiable" in bad.stderr
