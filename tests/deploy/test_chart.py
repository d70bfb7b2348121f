"""The chart lints, renders for every scenario, and every rendered object validates against its schema."""

from __future__ import annotations

from typing import Any

import pytest

from ragserve_testkit import CRDS
from tests.deploy.conftest import CHART, SCENARIOS, one, run, worker_group
from tests.deploy.validation import validate


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict(helm: str, scenario: str) -> None:
    values = SCENARIOS[scenario]
    proc = run([helm, "lint", "--strict", str(CHART), *(["-f", str(values)] if values else [])], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_validates(rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    docs = rendered[scenario]
    assert {d["kind"] for d in docs} >= {"RayService", "NetworkPolicy"}
    errors = {f"{d['kind']}/{d['metadata']['name']}": validate(d, CRDS) for d in docs}
    assert not {k: v for k, v in errors.items() if v}


def test_validation_rejects_unknown_fields_and_kinds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The validators can fail: a typo in a RayService, a built-in kind and a monitor, and an unknown kind."""
    import copy

    docs = copy.deepcopy(rendered["monitoring"])
    rs = one(docs, "RayService")
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert any("maxReplica" in e for e in validate(rs, CRDS))
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    pdb["spec"]["maxUnavailible"] = 1
    assert validate(pdb, CRDS)
    pm = one(docs, "PodMonitor")
    pm["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    assert validate(pm, CRDS)
    assert validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, CRDS)


def test_gpu_group_follows_tensor_parallelism(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, gpus in (("default", 1), ("gpu-tp2", 2)):
        group = worker_group(rendered[scenario], "gpu")
        assert group is not None, scenario
        container = group["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus, scenario
        assert group["template"]["spec"]["tolerations"], "GPU nodes are tainted"
        assert group["rayStartParams"]["num-cpus"] == "1", "only the generator fits on GPU pods"
    assert worker_group(rendered["minimal-cpu"], "gpu") is None, "device: cpu renders no GPU group"


def test_gpu_group_bounds_follow_generator_replicas(rendered: dict[str, list[dict[str, Any]]]) -> None:
    group = worker_group(rendered["gpu-tp2"], "gpu")
    assert group is not None
    assert (group["minReplicas"], group["maxReplicas"], group["replicas"]) == (1, 3, 1)


def test_pod_hardening(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rc = one(rendered["gpu-tp2"], "RayService")["spec"]["rayClusterConfig"]
    templates = [rc["headGroupSpec"]["template"]] + [g["template"] for g in rc["workerGroupSpecs"]]
    for t in templates:
        spec = t["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (c,) = spec["containers"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"]["requests"] and c["resources"]["limits"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", "/dev/shm", "/var/lib/ragserve", "/models"} <= mounts
        env = {e["name"]: e for e in c["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
        assert env["RAGSERVE_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "ragserve-api-keys"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "ragserve-model-cache"
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert rc["autoscalerOptions"]["securityContext"]["readOnlyRootFilesystem"] is True
    assert rc["enableInTreeAutoscaling"] is True


def test_milvus_token_and_ca_come_from_secrets(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external-milvus-tls"]
    rs = one(docs, "RayService")
    assert "token" not in rs["spec"]["serveConfigV2"]
    c = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["RAGSERVE__STORE__TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "milvus-token",
        "key": "token",
    }
    assert env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]["value"] == "/etc/ragserve/milvus-ca/ca.crt"
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    milvus = [r for r in egress if any(p.get("port") == 19530 for p in r.get("ports", []))]
    assert [p["ipBlock"]["cidr"] for p in milvus[0]["to"]] == ["203.0.113.10/32", "203.0.113.11/32"]


def test_ingress_streams_sse_to_the_serve_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["gpu-tp2"]
    ing = one(docs, "Ingress")
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert ing["spec"]["tls"][0]["secretName"] == "rag-example-com-tls"
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/v1", "Prefix"), ("/openapi.json", "Exact")]
    serve_svc = one(docs, "RayService")["spec"]["serveService"]["metadata"]["name"]
    assert all(p["backend"]["service"] == {"name": serve_svc, "port": {"name": "serve"}} for p in paths)


def test_ingress_and_egress_follow_the_app_config(helm_template: Any) -> None:
    """The chart derives the Ingress paths, its body limit and the Milvus egress port from the app config (the
    model's defaults < profile < values.app); it keeps no copy of them."""
    from ragserve.config import RouterConfig
    from tests.deploy.conftest import CHART, docs_of, serve_app

    gpu_tp2 = ("-f", str(CHART / "ci" / "gpu-tp2-values.yaml"))
    default = one(docs_of(helm_template(*gpu_tp2).stdout), "Ingress")["metadata"]["annotations"]
    body_limit = RouterConfig.model_fields["max_body_bytes"].default
    assert default["nginx.ingress.kubernetes.io/proxy-body-size"] == str(body_limit)
    docs = docs_of(
        helm_template(
            *gpu_tp2,
            *("--set", "app.router.route_prefix=/api", "--set", "app.router.max_body_bytes=2048"),
            *("--set", "app.store.uri=http://milvus.example:29530"),
        ).stdout
    )
    ing = one(docs, "Ingress")
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "2048"
    assert [p["path"] for p in ing["spec"]["rules"][0]["http"]["paths"]] == ["/api/v1", "/api/openapi.json"]
    assert serve_app(docs)["route_prefix"] == "/api"
    ports = [p.get("port") for r in one(docs, "NetworkPolicy")["spec"]["egress"] for p in r.get("ports", [])]
    assert 29530 in ports and 19530 not in ports
    no_port = helm_template("--set", "app.store.uri=http://milvus.example", check=False)
    assert no_port.returncode != 0 and "names no port" in no_port.stderr


def test_monitoring_objects_are_separately_switched(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """PodMonitor, dashboards and PrometheusRule each behind their own value; no ServiceMonitor (the router's
    /metrics shows one node's agent only: the PodMonitor is the scrape path)."""
    kinds = [d["kind"] for d in rendered["monitoring"]]
    assert {"PodMonitor", "PrometheusRule"} <= set(kinds) and "ServiceMonitor" not in kinds
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} & {
        d["kind"] for d in rendered["default"]
    }
    for kind in ("PodMonitor", "PrometheusRule"):
        assert one(rendered["monitoring"], kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    np_ingress = one(rendered["monitoring"], "NetworkPolicy")["spec"]["ingress"]
    assert [{"port": 8080, "protocol": "TCP"}] in [r.get("ports") for r in np_ingress]
    assert not any(
        {"port": 8080, "protocol": "TCP"} in r.get("ports", [])
        for r in one(rendered["default"], "NetworkPolicy")["spec"]["ingress"]
    ), "the metrics port opens to Prometheus only with the PodMonitor"


def test_pod_selectors_match_ray_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """PDBs, the NetworkPolicy and the PodMonitor select the pods KubeRay creates from our templates."""
    docs = rendered["monitoring"]
    rc = one(docs, "RayService")["spec"]["rayClusterConfig"]
    pods = [rc["headGroupSpec"]["template"]] + [g["template"] for g in rc["workerGroupSpecs"]]
    labels = [p["metadata"]["labels"] for p in pods]
    assert all("app.kubernetes.io/name" not in pl for pl in labels), "KubeRay owns app.kubernetes.io/name"
    selectors = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    selectors += [one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    selectors += [one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]]
    for sel in selectors:
        assert any(sel.items() <= pl.items() for pl in labels), sel
    assert len([d for d in docs if d["kind"] == "PodDisruptionBudget"]) == 2


def test_notes_give_ready_commands(helm: str) -> None:
    proc = run(
        [
            helm,
            "install",
            "rel",
            str(CHART),
            "--dry-run=client",
            "-n",
            "ragserve",
            "-f",
            str(CHART / "ci" / "gpu-tp2-values.yaml"),
        ]
    )
    assert "kubectl -n ragserve wait rayservice/rel-ragserve --for=condition=Ready" in proc.stdout
    assert "RAGSERVE_URL=https://rag.example.com" in proc.stdout
    assert "2 x nvidia.com/gpu per pod" in proc.stdout
