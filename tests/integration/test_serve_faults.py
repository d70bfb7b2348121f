"""Dependency faults injected for real: the link to Milvus is cut through a TCP proxy, then restored."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest

from tests.integration.serving import (
    AUTH,
    BASE,
    OFF_TOPIC,
    QUESTION,
    Served,
    grow_embedder_pool,
    kill_replica,
    post,
)
from tests.integration.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_milvus_outage_gives_503_then_recovers(served: Served) -> None:
    proxy: TcpProxy = served.proxy
    doc = {"source": "ops.md", "text": "# Ops\n\nRestart the Milvus proxy when queries time out."}
    assert post("/v1/documents", {"documents": [doc]}, timeout=60).status_code == 200
    body = {"query": "What do I restart when queries time out?", "top_k": 1}
    assert post("/v1/search", body, timeout=30).status_code == 200

    proxy.cut()
    started = time.monotonic()
    res = post("/v1/search", body, timeout=60)
    elapsed = time.monotonic() - started
    assert res.status_code == 503, res.text
    assert "Milvus" in res.json()["error"]["message"] and res.headers.get("retry-after")
    assert elapsed < 30  # within the request timeout, never a hang
    ready = httpx.get(BASE + "/readyz", timeout=60, headers=AUTH)
    assert ready.status_code == 503 and ready.json()["checks"]["milvus"].startswith("unavailable")
    assert ready.json()["checks"]["embedder"] == "ok"
    query = post("/v1/query", {"question": "What do I restart?"}, timeout=60)
    assert query.status_code == 503 and "Milvus" in query.json()["error"]["message"]

    proxy.restore()
    restored = time.monotonic()
    while time.monotonic() - restored < 60:
        if post("/v1/search", body, timeout=30).status_code == 200:
            break
        time.sleep(0.5)
    recovery_s = time.monotonic() - restored
    # nothing lost. Filtered to the document: the session's collection also holds the fuzz test's random
    # documents, and one of them once outranked it for this query
    hits = post("/v1/search", {**body, "filter": {"sources": ["ops.md"]}}, timeout=30).json()["hits"]
    assert hits and hits[0]["source"] == "ops.md" and "Restart the Milvus proxy" in hits[0]["chunk"]
    assert httpx.get(BASE + "/readyz", timeout=30, headers=AUTH).status_code == 200
    print(f"\nMilvus outage: 503 after {elapsed:.1f} s; recovered {recovery_s:.1f} s after the link returned")


def test_embedder_replica_crash_under_load_loses_under_1_percent(served: Served) -> None:
    assert grow_embedder_pool(2) == 2  # a second replica to retry on
    body = {"query": "What do I restart when queries time out?", "top_k": 1}

    def one(i: int) -> int:
        if i == 40:  # 40 requests in, with both replicas up
            kill_replica("Embedder")
        try:
            return post("/v1/search", body, timeout=60).status_code
        except httpx.HTTPError:
            return 0

    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(200)))
    failed = sum(c != 200 for c in codes)
    print(f"\nembedder replica killed under load: {failed}/{len(codes)} requests failed")
    assert failed / len(codes) < 0.01


def test_generator_down_search_still_works_then_recovers(served: Served) -> None:
    kill_replica("Generator")
    started = time.monotonic()
    search = post("/v1/search", {"query": "restart", "top_k": 1}, timeout=30)
    assert search.status_code == 200  # retrieval does not need the generator
    query = post("/v1/query", {"question": QUESTION}, timeout=60)
    assert query.status_code == 503 and query.headers.get("retry-after")
    assert "generator" in query.json()["error"]["message"] and time.monotonic() - started < 30
    # A follow-up whose rewrite needs the dead generator: retrieval falls back to append and says so; the
    # conversation is off-topic, so the answer abstains without generating and the request succeeds.
    follow_up = [
        {"role": "user", "content": OFF_TOPIC},
        {"role": "assistant", "content": "Mix milk with a little lemon juice."},
        {"role": "user", "content": "and what about for eggs?"},
    ]
    chat = post("/v1/chat/completions", {"messages": follow_up, "conversation": "rewrite"}, timeout=60)
    assert chat.status_code == 200, chat.text
    body = chat.json()
    assert body["retrieval_method"] == "append" and body["retrieval_fallback"].startswith("rewrite")
    assert body["grounded"] is False and "rewrite_ms" in body["timings"]
    print(
        f"\nrewrite with the generator down: {body['retrieval_fallback']} "
        f"after {body['timings']['rewrite_ms']} ms"
    )
    while time.monotonic() - started < 180:
        if post("/v1/query", {"question": QUESTION}, timeout=60).status_code == 200:
            break
        time.sleep(2)
    recovered = time.monotonic() - started
    assert post("/v1/query", {"question": QUESTION}, timeout=60).status_code == 200
    print(f"\ngenerator replica killed: 503 at once, answers again after {recovered:.0f} s (engine restart)")
