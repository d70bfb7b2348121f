"""checkov over everything that reaches a cluster, run once: every chart scenario, every overlay, and the
Pods KubeRay creates from the RayService templates (checkov does not read RayService pod templates)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO

CHECKOV = REPO / ".tools" / "checkov-venv" / "bin" / "checkov"

SKIPS = {
    # Probes: KubeRay injects liveness/readiness probes into every Ray container (raylet/GCS health, and
    # the Serve proxy's /-/healthz on workers) when the template has none; ours would override them.
    "CKV_K8S_8": "KubeRay adds liveness probes",
    "CKV_K8S_9": "KubeRay adds readiness probes",
    # Digests: images are built by the user's pipeline; it pins them through image.cpuTag/gpuTag
    # (`0.1.0-cpu@sha256:...`). The chart cannot know a digest.
    "CKV_K8S_43": "digest set by the release pipeline",
    # Pull policy: the images are multi-GB (CUDA, vLLM) and their tags immutable; Always would pull on
    # every pod start and slow autoscaling. IfNotPresent is the default, Always stays one value away.
    "CKV_K8S_15": "IfNotPresent with immutable tags",
    # UID: the official Ray images run as `ray` (uid 1000), which owns the Python install and $HOME.
    "CKV_K8S_40": "uid 1000 is the Ray image's user",
    # Secrets as env: ragserve's contract is RAGSERVE__STORE__TOKEN / RAGSERVE_API_KEYS / HF_TOKEN.
    "CKV_K8S_35": "the app reads its secrets from the environment",
}
# Head pods only: the in-tree autoscaler sidecar talks to the Kubernetes API with the head's service
# account (workers set automountServiceAccountToken: false, and that stays checked).
HEAD_SKIP = "CKV_K8S_38=the KubeRay autoscaler sidecar needs the API token"


def _pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pods = []
    for d in docs:
        if d["kind"] != "RayService":
            continue
        rc = d["spec"]["rayClusterConfig"]
        groups = [("head", rc["headGroupSpec"])] + [
            (g["groupName"], g) for g in rc.get("workerGroupSpecs", [])
        ]
        for name, group in groups:
            meta = {
                "name": f"{d['metadata']['name']}-{name}",
                "namespace": d["metadata"]["namespace"],
                "labels": group["template"]["metadata"]["labels"],
            }
            if name == "head":
                meta["annotations"] = {"checkov.io/skip1": HEAD_SKIP}
            pods.append(
                {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": group["template"]["spec"]}
            )
    return pods


def test_checkov_passes(rendered: dict[str, Any], built_overlays: dict[str, Any], tmp_path: Path) -> None:
    if not CHECKOV.exists():
        msg = "checkov not installed: run scripts/install-deploy-tools.sh"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    sets = {**rendered, **{f"overlay-{k}": v for k, v in built_overlays.items()}}
    for name, docs in sets.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(docs + _pods(docs)), encoding="utf-8")
    # A canary in the same run proves checkov can fail here: a worker Pod without its security context.
    canary = copy.deepcopy(_pods(rendered["default"])[-1])
    canary["metadata"]["name"] = "canary"
    del canary["spec"]["containers"][0]["securityContext"]
    (tmp_path / "canary.yaml").write_text(yaml.safe_dump(canary), encoding="utf-8")
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--compact",
            "--skip-check",
            ",".join(SKIPS),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    canary_failed = {f.split()[0] for f in failed if f.endswith("(/canary.yaml)")}
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28"} <= canary_failed, canary_failed
    failed = [f for f in failed if not f.endswith("(/canary.yaml)")]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert not failed, "\n".join(failed)
    assert passed > 100, f"checkov checked too little ({passed} checks): did it read the manifests?"
