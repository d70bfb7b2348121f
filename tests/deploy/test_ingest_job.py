"""The optional ingestion RayJob (templates/ingest-rayjob.yaml): off by default; when on, it runs
`ragserve ingest PATH --ray auto` with the chart's app config, the source PVC on every pod and a GPU group."""

from __future__ import annotations

from typing import Any

import yaml

from ragserve_testkit import CRDS
from tests.deploy.conftest import one
from tests.deploy.validation import validate


def groups(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = job["spec"]["rayClusterSpec"]
    return {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}


def test_no_job_unless_enabled(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, docs in rendered.items():
        if scenario != "ingest-job":
            assert not [d for d in docs if d["kind"] == "RayJob"], scenario


def test_job_runs_the_ray_ingest_with_the_app_config(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["ingest-job"]
    job = one(docs, "RayJob")
    assert not validate(job, CRDS)
    entry = job["spec"]["entrypoint"]
    assert entry.startswith('python -m ragserve.cli ingest "/data/docs/site/en" ')
    assert entry.endswith("--ray auto") and '"--prune"' in entry
    assert '--tenant "acme" --groups "eng,ops" "--prune"' in entry  # ingest.tenant and ingest.groups
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-ingest"))
    app = yaml.safe_load(config["data"]["app.yaml"])
    assert app["store"]["uri"].startswith("http://milvus") and app["ingest"]["ray"]["embed_actors"] == 2


def test_every_pod_mounts_the_source_and_gpus_go_to_the_gpu_group(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    job = one(rendered["ingest-job"], "RayJob")
    found = groups(job)
    assert set(found) == {"head", "ingest-cpu", "ingest-gpu"}
    for name, group in found.items():
        pod = group["template"]["spec"]
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        ]
        assert "ragserve-docs" in claims, name
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/data/docs"]["readOnly"] is True, name
    limits = found["ingest-gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1 and found["ingest-gpu"]["replicas"] == 2
    cpu_limits = found["ingest-cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu_limits
    assert found["head"]["rayStartParams"]["num-cpus"] == "0", "the driver's pod runs no tasks"


def test_too_few_gpus_for_the_embedding_actors_is_refused(helm_template: Any) -> None:
    proc = helm_template(
        "--set", "ingest.enabled=true", "--set", "app.ingest.ray.embed_actors=3", check=False
    )
    assert proc.returncode != 0
    assert "3 embedding actors x 1 GPUs need more GPUs than ingest.gpuWorkers has (1 pods x 1)" in proc.stderr
