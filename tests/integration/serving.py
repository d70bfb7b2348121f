"""One Ray Serve application for every integration test that needs one, deployed the way KubeRay deploys it.

``ragserve serve-config``'s document (``serve_config(cfg)``: import path, ``args`` without scaling knobs, each
deployment's Serve options in ``deployments:``) goes to the Serve controller's declarative API, the call the
Ray dashboard makes when KubeRay submits a RayService's serveConfigV2. Milvus is a Milvus Lite gRPC server
behind a TCP proxy, reached by URI as in a cluster, so the fault tests can cut the link.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ragserve.config import TINY_LLAMA, AppConfig

APP = "ragserve"
GENERATOR = os.environ["RAGSERVE__GENERATOR__MODEL"]  # the session's, chosen in tests/conftest.py
# Short answers from the random tiny Llama keep the tests fast; a real model keeps its profile's sampling.
SAMPLING = {"sampling": {"max_tokens": 64}} if GENERATOR == TINY_LLAMA else {}
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
API_KEY = "test-key-0123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTION = "What do the parameters for HNSW mean?"
OFF_TOPIC = "What is a good substitute for buttermilk in pancakes?"  # the docs cannot cover it
MILVUS_TIMEOUT_S = 3.0
RERANKER_TIMEOUT_S = 5.0
# Pages of the Milvus docs the app serves (gold pages of several dev questions and neighbours).
PAGES = ("reference/index.md", "reference/metric.md", "reference/consistency.md", "about/limitations.md")


@dataclass
class Served:
    cfg: AppConfig
    document: dict[str, Any]  # the serveConfigV2 document deployed
    home: Path
    proxy: Any  # tests.integration.tcp_proxy.TcpProxy between the app and Milvus


def post(path: str, body: dict[str, Any], timeout: float = 120) -> httpx.Response:
    return httpx.post(BASE + path, json=body, timeout=timeout, headers=AUTH)


def get(path: str, timeout: float = 30) -> httpx.Response:
    return httpx.get(BASE + path, timeout=timeout, headers=AUTH)


def metrics_text_with(series: str, timeout_s: float = 20) -> str:
    """GET /metrics until it shows ``series``: replicas report to the node's agent every
    ``metrics_report_interval_ms``, so a count made a moment ago may not be there yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(BASE + "/metrics", timeout=30).text
        if series in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def deploy(document: dict[str, Any], timeout_s: float = 600) -> None:
    """Submit a serveConfigV2 document to the controller and wait until the app is RUNNING again."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    client = _get_global_client()
    client.deploy_apps(ServeDeploySchema.model_validate(document))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = app_status()
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"deploy failed: {deployment_details()}")
        time.sleep(1)
    raise TimeoutError(f"app not RUNNING after {timeout_s:.0f} s: {app_status()}")


def app_status() -> str | None:
    from ray import serve

    app = serve.status().applications.get(APP)
    return str(app.status.value if hasattr(app.status, "value") else app.status) if app else None


def deployment_details() -> dict[str, Any]:
    """The controller's view of each deployment: its target config and its replicas (with actor ids)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    return dict(details.applications[APP].deployments)


def replicas(deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[APP].deployments[deployment]
    return sum(n for state, n in status.replica_states.items() if str(state).endswith("RUNNING"))


def grow_embedder_pool(to: int, timeout_s: float = 150) -> int:
    """Send concurrent searches until the embedder pool has ``to`` replicas (or the time is up)."""
    import concurrent.futures as cf

    # without the reranker: its queue would hold the load in front of the embedder
    body = {"query": "How are consistency levels defined?", "top_k": 3, "rerank": False}
    stop_at = time.time() + timeout_s
    # 32 at once: the router sends its pending queries in one call and ONNX encodes a query in ~4 ms, so 16
    # clients once left one call in flight for 90 s and the pool at 1 (a CI run of 314085e).
    with cf.ThreadPoolExecutor(32) as pool:
        while time.time() < stop_at and replicas("Embedder") < to:
            list(pool.map(lambda _: post("/v1/search", body).status_code, range(128)))
    return replicas("Embedder")


def replica_pid(deployment: str) -> int:
    """The process id of the (first) replica of a deployment of the app."""
    import os

    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    replica = next(n for n in names if n.startswith(f"SERVE_REPLICA::{APP}#{deployment}#"))
    actor = ray.get_actor(replica, namespace="serve")
    return int(ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()), timeout=30))


def kill_replica(deployment: str) -> None:
    """SIGKILL-equivalent for one replica actor of the app; Serve must notice and replace it."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    replica = next(n for n in names if n.startswith(f"SERVE_REPLICA::{APP}#{deployment}#"))
    ray.kill(ray.get_actor(replica, namespace="serve"), no_restart=True)
