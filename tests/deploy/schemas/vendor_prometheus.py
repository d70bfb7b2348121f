"""Regenerate prometheus-operator-v0.80.1.json: the ServiceMonitor, PodMonitor and PrometheusRule schemas,
taken from the PyPI package cloudcoil-models-prometheus-operator 0.80.1.0 (pydantic models generated from
the prometheus-operator v0.80.1 CRDs), made strict (unknown fields rejected, as `kubectl --validate=strict`).

    python3 -m venv /tmp/pv && /tmp/pv/bin/pip install cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/pv/bin/python tests/deploy/schemas/vendor_prometheus.py
"""

import json
from pathlib import Path

from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor

OUT = Path(__file__).with_name("prometheus-operator-v0.80.1.json")


def strict(node, in_properties=False):
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        return {k: strict(v) for k, v in node.items()}
    any_of = node.get("anyOf")
    if any_of and {"type": "null"} in any_of:  # Optional[X]: Kubernetes omits the field instead
        rest = [s for s in any_of if s != {"type": "null"}]
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**merged, **rest[0]} if len(rest) == 1 else {**merged, "anyOf": rest}
    out = {
        k: strict(v, in_properties=(k == "properties"))
        for k, v in node.items()
        if k not in ("title", "default", "description")
    }
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


schemas = {}
for model in (ServiceMonitor, PodMonitor, PrometheusRule):
    s = strict(model.model_json_schema(by_alias=True, mode="validation"))
    s["required"] = sorted(set(s.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    schemas[model.__name__] = s
OUT.write_text(json.dumps(schemas, indent=1, sort_keys=True) + "\n", encoding="utf-8")
print(f"wrote {OUT}")
