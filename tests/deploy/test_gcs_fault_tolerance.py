"""GCS fault tolerance (values `gcsFaultTolerance`, off by default): KubeRay's gcsFaultToleranceOptions with
the Redis password from a Secret, valid for the v1.7.0 CRD and for the rules KubeRay's webhook-free
validation applies at reconcile time (ray-operator/controllers/ray/utils/validation.go)."""

from __future__ import annotations

import copy
from typing import Any

from ragserve_testkit import CRDS
from tests.deploy.conftest import docs_of, one
from tests.deploy.validation import validate


def cluster(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "RayService")["spec"]["rayClusterConfig"]


def test_off_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, docs in rendered.items():
        if scenario != "gcs-fault-tolerance":
            assert "gcsFaultToleranceOptions" not in cluster(docs), scenario


def test_options_render_with_the_password_from_a_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["gcs-fault-tolerance"]
    rc = cluster(docs)
    assert rc["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis-master.redis.svc.cluster.local:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "ragserve-redis", "key": "redis-password"}}},
    }, "no externalStorageNamespace: KubeRay then uses each RayCluster's UID"
    assert not validate(one(docs, "RayService"), CRDS)
    # What KubeRay refuses next to gcsFaultToleranceOptions: the old annotation, Redis settings set by hand.
    rs = one(docs, "RayService")
    assert "ray.io/ft-enabled" not in str(rs["metadata"]) + str(rc["headGroupSpec"]["template"]["metadata"])
    assert "redis-password" not in rc["headGroupSpec"]["rayStartParams"]
    head_env = {e["name"] for e in rc["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert not head_env & {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"}


def test_crd_schema_catches_a_misspelt_option(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rs = copy.deepcopy(one(rendered["gcs-fault-tolerance"], "RayService"))
    rs["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]["redisPasword"] = {"value": "x"}
    assert any("redisPasword" in e for e in validate(rs, CRDS))


def test_refusals_name_the_key(helm_template: Any) -> None:
    proc = helm_template("--set", "gcsFaultTolerance.enabled=true", check=False)
    assert proc.returncode != 0 and "gcsFaultTolerance.redisAddress is required" in proc.stderr
    shared = ("--set", "gcsFaultTolerance.enabled=true", "--set", "gcsFaultTolerance.redisAddress=redis:6379")
    shared += ("--set", "gcsFaultTolerance.externalStorageNamespace=ragserve")
    proc = helm_template(*shared, check=False)
    assert proc.returncode != 0 and "upgradeStrategy NewCluster" in proc.stderr, proc.stderr
    docs = docs_of(helm_template(*shared, "--set", "rayService.upgradeStrategy=None").stdout)
    assert cluster(docs)["gcsFaultToleranceOptions"]["externalStorageNamespace"] == "ragserve"
    proc = helm_template("--set", "gcsFaultTolerance.redisAddress=http://redis:6379", check=False)
    assert proc.returncode != 0 and "/gcsFaultTolerance/redisAddress" in proc.stderr
