"""Dependency faults injected for real: the link to Milvus is cut through a TCP proxy, then restored."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ragserve.app import build_app
from ragserve.store.lite_server import LiteServer
from tests.integration.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.vllm]
APP = "faults"
PORT = 8765  # the Serve HTTP proxy shared with test_serve_app (one Serve instance per Ray cluster)
BASE = f"http://127.0.0.1:{PORT}/{APP}"
MILVUS_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def faulty_app(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    home = tmp_path_factory.mktemp("faults-home")
    milvus = LiteServer(str(home / "milvus.db"))  # a Milvus server the app reaches by URI, as in a cluster
    proxy = TcpProxy(milvus.port).start()
    args = {
        "data_dir": str(home),
        "store": {"uri": proxy.uri, "timeout_s": MILVUS_TIMEOUT_S},
        "router": {"request_timeout_s": 30, "first_token_timeout_s": 5, "route_prefix": f"/{APP}"},
        "embedder": {"deployment": {"min_replicas": 2, "max_replicas": 2}},
    }
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield {"proxy": proxy}
    serve.delete(APP)
    proxy.cut()
    milvus.stop()


def test_milvus_outage_gives_503_then_recovers(faulty_app) -> None:
    proxy: TcpProxy = faulty_app["proxy"]
    doc = {"source": "ops.md", "text": "# Ops\n\nRestart the Milvus proxy when queries time out."}
    assert httpx.post(BASE + "/v1/documents", json={"documents": [doc]}, timeout=60).status_code == 200
    body = {"query": "What do I restart when queries time out?", "top_k": 1}
    assert httpx.post(BASE + "/v1/search", json=body, timeout=30).status_code == 200

    proxy.cut()
    started = time.monotonic()
    res = httpx.post(BASE + "/v1/search", json=body, timeout=60)
    elapsed = time.monotonic() - started
    assert res.status_code == 503, res.text
    assert "Milvus" in res.json()["error"]["message"] and res.headers.get("retry-after")
    assert elapsed < 30  # within the request timeout, never a hang
    ready = httpx.get(BASE + "/readyz", timeout=60)
    assert ready.status_code == 503 and ready.json()["checks"]["milvus"].startswith("unavailable")
    assert ready.json()["checks"]["embedder"] == "ok"
    query = httpx.post(BASE + "/v1/query", json={"question": "What do I restart?"}, timeout=60)
    assert query.status_code == 503 and "Milvus" in query.json()["error"]["message"]

    proxy.restore()
    restored = time.monotonic()
    while time.monotonic() - restored < 60:
        if httpx.post(BASE + "/v1/search", json=body, timeout=30).status_code == 200:
            break
        time.sleep(0.5)
    recovery_s = time.monotonic() - restored
    hits = httpx.post(BASE + "/v1/search", json=body, timeout=30).json()["hits"]
    assert hits and hits[0]["source"] == "ops.md"  # nothing lost
    assert httpx.get(BASE + "/readyz", timeout=30).status_code == 200
    print(f"\nMilvus outage: 503 after {elapsed:.1f} s; recovered {recovery_s:.1f} s after the link returned")


def kill_replica(deployment: str) -> None:
    """SIGKILL-equivalent for one replica actor of this app; Serve must notice and replace it."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    replica = next(n for n in names if n.startswith(f"SERVE_REPLICA::{APP}#{deployment}#"))
    ray.kill(ray.get_actor(replica, namespace="serve"), no_restart=True)


def test_embedder_replica_crash_under_load_loses_under_1_percent(faulty_app) -> None:
    body = {"query": "What do I restart when queries time out?", "top_k": 1}

    def one(i: int) -> int:
        if i == 60:
            kill_replica("Embedder")
        try:
            return httpx.post(BASE + "/v1/search", json=body, timeout=60).status_code
        except httpx.HTTPError:
            return 0

    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(400)))
    failed = sum(c != 200 for c in codes)
    print(f"\nembedder replica killed under load: {failed}/{len(codes)} requests failed")
    assert failed / len(codes) < 0.01


def test_generator_down_search_still_works_then_recovers(faulty_app) -> None:
    kill_replica("Generator")
    started = time.monotonic()
    search = httpx.post(BASE + "/v1/search", json={"query": "restart", "top_k": 1}, timeout=30)
    assert search.status_code == 200  # retrieval does not need the generator
    query = httpx.post(BASE + "/v1/query", json={"question": "What do I restart?"}, timeout=60)
    assert query.status_code == 503 and query.headers.get("retry-after")
    assert "generator" in query.json()["error"]["message"] and time.monotonic() - started < 30
    while time.monotonic() - started < 180:
        if (
            httpx.post(BASE + "/v1/query", json={"question": "What do I restart?"}, timeout=60).status_code
            == 200
        ):
            break
        time.sleep(2)
    recovered = time.monotonic() - started
    assert (
        httpx.post(BASE + "/v1/query", json={"question": "What do I restart?"}, timeout=60).status_code == 200
    )
    print(f"\ngenerator replica killed: 503 at once, answers again after {recovered:.0f} s (engine restart)")
