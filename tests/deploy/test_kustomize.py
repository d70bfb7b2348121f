"""Kustomize: the base is the chart's rendering (no drift), every overlay builds and validates, and the
JSON6902 patches keep the RayService pod templates whole."""

from __future__ import annotations

from typing import Any

import pytest

from ragserve_testkit import CRDS
from tests.deploy.conftest import DEPLOY, OVERLAYS, load_script, one, worker_group
from tests.deploy.validation import validate


def test_generated_files_have_no_drift(helm: str) -> None:
    render = load_script("render_kustomize")
    stale = [
        str(p.relative_to(DEPLOY))
        for p, text in render.outputs().items()
        if p.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run .venv/bin/python deploy/scripts/render_kustomize.py (stale: {stale})"


def test_overlays_exist() -> None:
    assert OVERLAYS == ["dev-cpu", "prod-gpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_validate(built_overlays: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = built_overlays[overlay]
    errors = {f"{d['kind']}/{d['metadata']['name']}": validate(d, CRDS) for d in docs}
    assert not {k: v for k, v in errors.items() if v}
    namespace = {"dev-cpu": "ragserve-dev", "prod-gpu": "ragserve"}[overlay]
    assert {d["metadata"]["namespace"] for d in docs} == {namespace}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_patches_keep_pod_templates(built_overlays: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    rc = one(built_overlays[overlay], "RayService")["spec"]["rayClusterConfig"]
    for group in [rc["headGroupSpec"], *rc["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"].startswith("registry.example.com/ragserve:"), container["image"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {v["name"] for v in group["template"]["spec"]["volumes"]} >= {"tmp", "dshm", "model-cache"}


def test_dev_cpu_has_no_gpu(built_overlays: dict[str, list[dict[str, Any]]]) -> None:
    docs = built_overlays["dev-cpu"]
    assert worker_group(docs, "gpu") is None
    assert "nvidia.com/gpu" not in str(one(docs, "RayService")["spec"]["rayClusterConfig"])
    # One worker, like ci/minimal-cpu-values.yaml: no budgets (over one pod they would hold drains up).
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    cpu = worker_group(docs, "cpu")
    assert cpu is not None and cpu["minReplicas"] == cpu["replicas"] == cpu["maxReplicas"] == 1
    images = {cpu["template"]["spec"]["containers"][0]["image"]}
    assert images == {"registry.example.com/ragserve:0.1.0-cpu"}


def test_prod_gpu_patches(built_overlays: dict[str, list[dict[str, Any]]]) -> None:
    docs = built_overlays["prod-gpu"]
    gpu = worker_group(docs, "gpu")
    assert gpu is not None and gpu["maxReplicas"] == 2
    assert gpu["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert gpu["template"]["spec"]["containers"][0]["image"] == "registry.example.com/ragserve:0.1.0-gpu"
    ing = one(docs, "Ingress")
    assert ing["spec"]["rules"][0]["host"] == "rag.example.com" and ing["spec"]["tls"]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    budgets = {d["metadata"]["name"]: d["spec"]["minAvailable"] for d in pdbs}
    assert budgets == {"ragserve-cpu-worker": 1, "ragserve-head": 1}
