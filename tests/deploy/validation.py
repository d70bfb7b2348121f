"""Schema validation of rendered objects, strict everywhere: an unknown field is an error, and so is a kind
for which no schema is known.

- built-in kinds: kubernetes-validate (the Kubernetes OpenAPI schemas, strict mode);
- RayService and RayJob (and their cluster specs, checked against the RayCluster spec too): the KubeRay
  v1.7.0 CRDs in shared/schemas/crds, made strict (objects with declared properties are closed unless the
  CRD says x-kubernetes-preserve-unknown-fields);
- PodMonitor / PrometheusRule (and ServiceMonitor): tests/deploy/schemas/prometheus-operator-v0.80.1.json
  (vendored, see vendor_prometheus.py there).
CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
BUILTIN = {
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Pod"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
}
K8S_VERSIONS = ("1.27.0", "1.35.0")  # the chart's kubeVersion floor and the kubectl we ship


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k == "properties" else _strict(v)) for k, v in node.items()}
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(crds: Path, name: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((crds / name).read_text(encoding="utf-8"), Loader=loader)
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(v1["schema"]["openAPIV3Schema"])


@functools.cache
def prometheus_schemas() -> dict[str, Any]:
    return json.loads((HERE / "schemas" / "prometheus-operator-v0.80.1.json").read_text(encoding="utf-8"))


def _errors(schema: dict[str, Any], obj: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)
    ]


def validate(obj: dict[str, Any], crds: Path) -> list[str]:
    """Error messages for one object (empty = valid)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in BUILTIN:
        errs = []
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errs.append(f"k8s {version}: {'/'.join(map(str, e.path))}: {e.message}")
        return errs
    if key == ("ray.io/v1", "RayService"):
        errs = _errors(crd_schema(crds, "ray.io_rayservices.yaml"), obj)
        cluster_spec = crd_schema(crds, "ray.io_rayclusters.yaml")["properties"]["spec"]
        errs += [f"as RayCluster spec: {e}" for e in _errors(cluster_spec, obj["spec"]["rayClusterConfig"])]
        return errs
    if key == ("ray.io/v1", "RayJob"):
        errs = _errors(crd_schema(crds, "ray.io_rayjobs.yaml"), obj)
        cluster_spec = crd_schema(crds, "ray.io_rayclusters.yaml")["properties"]["spec"]
        errs += [f"as RayCluster spec: {e}" for e in _errors(cluster_spec, obj["spec"]["rayClusterSpec"])]
        return errs
    if key[0] == "monitoring.coreos.com/v1" and key[1] in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        return _errors(prometheus_schemas()[obj["kind"]], obj)
    return [f"no schema for {key[0]} {key[1]}: add one to tests/deploy/schemas.py"]
