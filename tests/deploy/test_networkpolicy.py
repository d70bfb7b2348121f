"""templates/networkpolicy.yaml: the Ray control ports (GCS 6379, dashboard 8265, client 10001) take
connections from this release's pods only (and the dashboard from the KubeRay operator); the Serve port stays
open to the Ingress controller; the ingestion job's submitter reaches its dashboard; Redis is reachable when
GCS fault tolerance is on."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.conftest import RELEASE, SCENARIOS, docs_of, one

RAY_CONTROL_PORTS = {6379: "GCS", 8265: "dashboard", 10001: "Ray client"}
RELEASE_PODS = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/part-of": "ragserve"}
OPERATOR_NS = {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}
INGRESS_NS = {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
# The labels KubeRay v1.7.0 puts on a RayJob's submitter pod (rayjob_controller.go, getSubmitterTemplate).
SUBMITTER = {"ray.io/originated-from-crd": "RayJob"}


def peers_reaching(policy: dict[str, Any], port: int) -> list[dict[str, Any]]:
    """The `from` peers of every ingress rule that admits TCP `port`; {} stands for "any source"."""
    out: list[dict[str, Any]] = []
    for rule in policy["spec"].get("ingress", []):
        ports = rule.get("ports") or [{}]  # no ports: every port
        if not any(p.get("port") in (None, port) and p.get("protocol", "TCP") == "TCP" for p in ports):
            continue
        out += rule.get("from") or [{}]  # no from: every source
    return out


def is_release_pods(peer: dict[str, Any]) -> bool:
    """Pods of this namespace that carry the release's labels (no namespace or IP peer beside)."""
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return set(peer) == {"podSelector"} and RELEASE_PODS.items() <= labels.items()


def outsiders(policy: dict[str, Any], port: int, job: str | None) -> list[dict[str, Any]]:
    allowed = []
    for peer in peers_reaching(policy, port):
        if is_release_pods(peer):
            continue
        if port == 8265 and peer == {"namespaceSelector": OPERATOR_NS}:
            continue  # KubeRay deploys the Serve application through the dashboard
        submitter = {**SUBMITTER, "ray.io/originated-from-cr-name": job}
        if port == 8265 and job and peer == {"podSelector": {"matchLabels": submitter}}:
            continue  # this release's ingestion job submits to its own cluster's dashboard
        allowed.append(peer)
    return allowed


def ingest_job_name(docs: list[dict[str, Any]]) -> str | None:
    jobs = [d["metadata"]["name"] for d in docs if d["kind"] == "RayJob"]
    return jobs[0] if jobs else None


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ray_control_ports_only_from_the_release(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    docs = rendered[scenario]
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == RELEASE_PODS, "the policy covers every Ray pod"
    assert "Ingress" in policy["spec"]["policyTypes"]
    for port, name in RAY_CONTROL_PORTS.items():
        assert not outsiders(policy, port, ingest_job_name(docs)), f"{scenario}: {name} ({port}) open"


def test_serve_port_stays_open_to_the_ingress_controller(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, docs in rendered.items():
        peers = peers_reaching(one(docs, "NetworkPolicy"), 8000)
        assert {"namespaceSelector": INGRESS_NS} in peers, scenario


def test_the_check_can_fail(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The same check flags a rule that opens everything, one that opens the GCS to another namespace, and
    the dashboard opened to the Ingress controller."""
    base = one(rendered["default"], "NetworkPolicy")
    for rule, port in (
        ({"from": [{"namespaceSelector": {}}]}, 10001),
        ({"ports": [{"port": 6379, "protocol": "TCP"}]}, 6379),
        ({"from": [{"namespaceSelector": INGRESS_NS}], "ports": [{"port": 8265}]}, 8265),
        ({"from": [{"podSelector": {"matchLabels": {"app": "other"}}}]}, 6379),
    ):
        policy = copy.deepcopy(base)
        policy["spec"]["ingress"].append(rule)
        assert outsiders(policy, port, None), rule


def test_ingest_submitter_reaches_its_dashboard(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """KubeRay's submitter pod carries none of our labels: without its own rule the job never starts."""
    docs = rendered["ingest-job"]
    job = ingest_job_name(docs)
    assert job
    submitter = {"podSelector": {"matchLabels": {**SUBMITTER, "ray.io/originated-from-cr-name": job}}}
    policy = one(docs, "NetworkPolicy")
    assert submitter in peers_reaching(policy, 8265)
    assert submitter not in peers_reaching(policy, 6379) + peers_reaching(policy, 10001)
    assert submitter not in peers_reaching(one(rendered["default"], "NetworkPolicy"), 8265)


def redis_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    return [r for r in egress if any(p.get("port") in (6379, 6380) for p in r.get("ports", []))]


def test_redis_egress_only_with_gcs_fault_tolerance(
    rendered: dict[str, list[dict[str, Any]]], helm_template: Any
) -> None:
    assert not redis_rules(rendered["default"])
    (rule,) = redis_rules(rendered["gcs-fault-tolerance"])
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redis"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
        }
    ]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    docs = docs_of(
        helm_template(
            "--set",
            "gcsFaultTolerance.enabled=true",
            "--set",
            "gcsFaultTolerance.redisAddress=rediss://redis.example.com:6380",
            "--set",
            "gcsFaultTolerance.networkPolicy.cidrs={198.51.100.7/32}",
        ).stdout
    )
    (rule,) = redis_rules(docs)
    assert rule == {
        "to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}],
        "ports": [{"port": 6380, "protocol": "TCP"}],
    }
