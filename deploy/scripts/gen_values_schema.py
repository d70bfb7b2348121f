"""Generate deploy/helm/ragserve/values.schema.json (Helm validates values against it on every install).

Two sources, so the schema cannot drift from either:
- `app`: ragserve's own config model (``AppConfig.model_json_schema()``), so the chart accepts exactly the
  keys and bounds the code accepts. `app` is an overlay on the profile file (the profile supplies every
  default over the model's), so no key of the model is required here except the chart's own: a server URI
  and the state directory; the token is forbidden (it comes from a Secret).
- everything else: inferred from values.yaml (types, closed objects), with the constraints in OVERRIDES and
  the `# --` comments as descriptions.

    .venv/bin/python deploy/scripts/gen_values_schema.py          # rewrite the file
    .venv/bin/python deploy/scripts/gen_values_schema.py --check  # exit 1 if it is stale (tests do this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from gen_chart_readme import comments
from generated import write_or_check

CHART = Path(__file__).resolve().parents[1] / "helm" / "ragserve"
SCHEMA_PATH = CHART / "values.schema.json"

# Keys whose value is free-form Kubernetes data (selectors, resources, ...): typed, never closed.
FREEFORM = {
    "nodeSelector",
    "tolerations",
    "affinity",
    "annotations",
    "labels",
    "resources",
    "rayStartParams",
    "podLabels",
    "podAnnotations",
    "podSecurityContext",
    "containerSecurityContext",
    "extraEnv",
    "extraIngress",
    "extraEgress",
    "namespaceSelector",
    "podSelector",
    "ingressNamespaceSelector",
    "operatorNamespaceSelector",
    "monitoringNamespaceSelector",
    "tls",
    "additionalRuleLabels",
}
QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"}
DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}
COUNT = {"type": "integer", "minimum": 0}
NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}
SPREAD = {"enum": ["DoNotSchedule", "ScheduleAnyway", ""]}
SECRET_NAME = {"type": "string", "pattern": r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$", "maxLength": 253}

# prometheus-operator RelabelConfig (the fields metricRelabelings take; `action` defaults to replace).
RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {"type": "string"},
        "modulus": {"type": "integer"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "targetLabel": {"type": "string"},
    },
}
ALERTS = ("highErrorRate", "latencySLO", "queueGrowing", "generatorWaiting", "noReadyReplicas")

OVERRIDES: dict[str, dict[str, Any]] = {
    "image.repository": {"minLength": 1},
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "image.pullSecrets": {"items": {"type": "string"}},
    "rayVersion": {"pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
    "milvus.tokenSecret.name": SECRET_NAME,
    "milvus.caSecret.name": SECRET_NAME,
    "apiKeys.secretName": SECRET_NAME,
    "huggingface.tokenSecret.name": SECRET_NAME,
    "milvus.networkPolicy.cidrs": {"items": {"type": "string"}},
    "milvus.networkPolicy.port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
    "modelCache.mountPath": {"pattern": "^/"},
    "modelCache.size": QUANTITY,
    "modelCache.accessModes": {
        "minItems": 1,
        "items": {"enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]},
    },
    "rayService.upgradeStrategy": {"enum": ["NewCluster", "None"]},
    "autoscaler.upscalingMode": {"enum": ["Default", "Conservative", "Aggressive"]},
    "autoscaler.idleTimeoutSeconds": COUNT,
    "head.shmSize": QUANTITY,
    "workers.cpu.replicas": COUNT,
    "workers.cpu.minReplicas": COUNT,
    "workers.cpu.maxReplicas": COUNT,
    "workers.cpu.gpus": COUNT,
    "workers.cpu.shmSize": QUANTITY,
    "workers.gpu.minReplicas": NULLABLE_COUNT,
    "workers.gpu.maxReplicas": NULLABLE_COUNT,
    "workers.gpu.shmSize": QUANTITY,
    "ingest.source.existingClaim": SECRET_NAME,
    "ingest.source.mountPath": {"pattern": "^/"},
    "ingest.source.path": {"minLength": 1},
    "ingest.args": {"items": {"type": "string"}},
    "ingest.ttlSecondsAfterFinished": COUNT,
    "ingest.backoffLimit": COUNT,
    "ingest.head.shmSize": QUANTITY,
    "ingest.cpuWorkers.replicas": COUNT,
    "ingest.cpuWorkers.shmSize": QUANTITY,
    "ingest.gpuWorkers.replicas": COUNT,
    "ingest.gpuWorkers.gpus": COUNT,
    "ingest.gpuWorkers.shmSize": QUANTITY,
    "serve.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "ingress.hosts": {"minItems": 1, "items": {"type": "string", "minLength": 1}},
    "ingress.paths": {
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "pathType"],
            "properties": {
                "path": {"type": "string", "pattern": "^[^/]"},
                "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]},
            },
        },
    },
    "metrics.podMonitor.interval": DURATION,
    "metrics.podMonitor.metricRelabelings": {"items": RELABEL},
    "dashboards.label": {"minLength": 1},
    "alerts.runbookBaseUrl": {"pattern": r"^(https?://\S+)?$"},
    "alerts.highErrorRate.threshold": {"type": "number", "maximum": 1},
    "alerts.latencySLO.p99Seconds": {"type": "number"},
    "alerts.queueGrowing.minQueued": {"type": "number"},
    "alerts.queueGrowing.growthPerSecond": {"type": "number"},
    "alerts.generatorWaiting.threshold": {"type": "number"},
    "alerts.noReadyReplicas.minHealthy": {"type": "number"},
    **{f"alerts.{rule}.for": DURATION for rule in ALERTS},
    **{f"alerts.{rule}.severity": {"minLength": 1} for rule in ALERTS},
    "podDisruptionBudget.maxUnavailable": COUNT,
    "podDisruptionBudget.protectHead": {"type": ["boolean", "null"]},
    **{f"workers.{g}.topologySpread.whenUnsatisfiable": SPREAD for g in ("cpu", "gpu")},
    **{f"workers.{g}.topologySpread.topologyKey": {"minLength": 1} for g in ("cpu", "gpu")},
    "gcsFaultTolerance.redisAddress": {"pattern": r"^(((redis|rediss)://)?[A-Za-z0-9.-]+(:[0-9]+)?)?$"},
    "gcsFaultTolerance.redisPassword.name": SECRET_NAME,
    "gcsFaultTolerance.externalStorageNamespace": {"pattern": r"^[A-Za-z0-9._:-]*$"},
    "gcsFaultTolerance.networkPolicy.cidrs": {"items": {"type": "string"}},
    "networkPolicy.httpsEgressCidrs": {"items": {"type": "string"}},
}

# The keys only the chart knows (everything else comes from the profile and the model's defaults).
APP_REQUIRED = {
    "AppConfig": ["profile", "data_dir", "store"],
    "StoreConfig": ["uri"],
}
MILVUS_URI = {
    "type": "string",
    "minLength": 1,
    "pattern": r"^(https?|tcp)://[^\s/]+(:[0-9]+)?/?$",
    "description": "Milvus server URI, http(s)://host:19530 (required; Milvus Lite files do not work in "
    "a cluster). The token comes from milvus.tokenSecret, never from here.",
}


def values_docs(text: str) -> dict[str, str]:
    """`# --` comments by dotted key path (the README's parser); the insides of free-form maps left out."""
    return {
        ".".join(c.path): c.text
        for c in comments(text)
        if c.path and not any(key in FREEFORM for key in c.path[:-1])
    }


def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf (a free-form map counts as one leaf) of a values tree."""
    out = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREEFORM:
            out += leaf_paths(value, path + ".")
        else:
            out.append(path)
    return out


def infer(value: Any, path: str, key: str, docs: dict[str, str]) -> dict[str, Any]:
    schema: dict[str, Any]
    if isinstance(value, dict) and key not in FREEFORM:
        schema = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: infer(v, f"{path}.{k}".lstrip("."), k, docs) for k, v in value.items()},
        }
    elif isinstance(value, dict):
        schema = {"type": "object"}
    elif isinstance(value, list):
        schema = {"type": "array"}
    elif isinstance(value, bool):
        schema = {"type": "boolean"}
    elif isinstance(value, int):
        schema = {"type": "integer"}
    elif isinstance(value, float):
        schema = {"type": "number"}
    elif isinstance(value, str):
        schema = {"type": "string"}
    else:
        schema = {}
    schema.update(OVERRIDES.get(path, {}))
    if path in docs:
        schema = {"description": docs[path], **schema}
    return schema


def _clean(node: Any, in_properties: bool = False) -> Any:
    """Drop pydantic's titles, defaults and required lists (the profile decides defaults and completes
    every block), keep everything else."""
    if isinstance(node, dict):
        return {
            k: _clean(v, in_properties=(k == "properties" and not in_properties))
            for k, v in node.items()
            if in_properties or k not in ("title", "default", "required")
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def app_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of `app`, its $defs) from ragserve's AppConfig, tightened for the chart."""
    from ragserve.config import AppConfig

    schema = _clean(AppConfig.model_json_schema())
    defs = schema.pop("$defs")
    store = defs["StoreConfig"]["properties"]
    store.pop("token")
    store["uri"] = MILVUS_URI
    schema["properties"]["data_dir"] = {
        **schema["properties"]["data_dir"],
        "type": "string",
        "pattern": "^/",
    }
    for name, required in APP_REQUIRED.items():
        target = schema if name == "AppConfig" else defs[name]
        target["required"] = sorted(set(target.get("required", [])) | set(required))
    schema["description"] = (
        "ragserve AppConfig keys (services/ragserve/config/), passed as serveConfigV2 args."
    )
    return schema, defs


def build() -> dict[str, Any]:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    docs = values_docs(text)
    root = infer(values, "", "", docs)
    app, defs = app_schema()
    root["properties"]["app"] = app
    root["properties"]["global"] = {"type": "object", "description": "Helm's global values (unused)."}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ragserve chart values (generated by deploy/scripts/gen_values_schema.py)",
        **root,
        "$defs": defs,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    return write_or_check({SCHEMA_PATH: render()}, argv, Path(__file__).name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
