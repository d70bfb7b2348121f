"""The reranker stage with the generated random cross-encoder: plumbing only (its order is arbitrary, so the
tests check that the served order is the model's own, not that it is good)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from ragserve.config import load_config
from tests.integration.serving import APP, QUESTION, RERANKER_TIMEOUT_S, Served, get, post, replica_pid


@pytest.fixture(scope="module")
def reranker_cfg(model_cache: Path):
    return load_config(env={}, overrides={"data_dir": str(model_cache.parent), "reranker": {"enabled": True}})


def test_a_batch_of_requests_is_one_forward_pass_split_back_per_request(
    reranker_cfg, model_cache: Path
) -> None:
    """The batch handler, called with the requests the replica grouped (the grouping itself:
    tests/unit/test_batching.py; the served test below sends concurrent requests through it)."""
    from prometheus_client import REGISTRY

    from ragserve.reranker.deployment import RerankerDeployment
    from ragserve.reranker.scorer import CrossEncoderScorer

    deployment = RerankerDeployment(reranker_cfg.reranker, str(model_cache))
    requests = [(f"question {i}", [f"passage {i}.{j} about HNSW" for j in range(i + 1)]) for i in range(6)]

    def batches() -> tuple[float, float]:
        sample = REGISTRY.get_sample_value
        return (
            sample("ragserve_reranker_batch_pairs_count") or 0.0,
            sample("ragserve_reranker_batch_pairs_sum") or 0.0,
        )

    before = batches()
    scored = asyncio.run(deployment.score_batch(requests))
    after = batches()
    assert (after[0] - before[0], after[1] - before[1]) == (1, sum(range(1, 7)))  # 21 pairs, one pass
    one_by_one = CrossEncoderScorer(reranker_cfg.reranker, model_cache)
    for (query, passages), scores in zip(requests, scored, strict=True):
        np.testing.assert_allclose(scores, one_by_one.score(query, passages), rtol=1e-4, atol=1e-5)
    assert len({round(float(s), 5) for s in scored[-1]}) > 1  # the random model does not score all alike


def test_concurrent_calls_through_serve_get_their_own_scores(served: Served) -> None:
    from ray import serve

    from ragserve.reranker.scorer import CrossEncoderScorer

    handle = serve.get_deployment_handle("Reranker", app_name=APP)
    requests = [(f"{QUESTION} {i}", [f"HNSW parameter {j}" for j in range(i + 2)]) for i in range(8)]

    async def all_at_once() -> list[np.ndarray]:
        return await asyncio.gather(*(handle.score.remote(r) for r in requests))

    scored = asyncio.run(all_at_once())
    scorer = CrossEncoderScorer(served.cfg.reranker, served.cfg.cache_dir)
    for (query, passages), scores in zip(requests, scored, strict=True):
        np.testing.assert_allclose(scores, scorer.score(query, passages), rtol=1e-4, atol=1e-5)


def test_served_order_is_the_cross_encoders(served: Served) -> None:
    from ragserve.reranker.scorer import CrossEncoderScorer

    res = post("/v1/search", {"query": QUESTION, "top_k": 5})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["timings"]["rerank_ms"] > 0
    hits = body["hits"]
    assert (
        len(hits) == 5 and max(sum(h["source"] == s for h in hits) for s in {h["source"] for h in hits}) <= 2
    )
    scorer = CrossEncoderScorer(served.cfg.reranker, served.cfg.cache_dir)  # the replica's generated model
    expected = scorer.score(QUESTION, [f"{h['title']}\n{h['chunk']}" for h in hits])
    np.testing.assert_allclose([h["score"] for h in hits], expected, rtol=1e-4, atol=1e-5)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    fused = post("/v1/search", {"query": QUESTION, "top_k": 5, "rerank": False}).json()
    assert "rerank_ms" not in fused["timings"]
    assert all(h["score"] < 0.05 for h in fused["hits"])  # RRF scores: 1/(60 + rank) per list
    bad = post("/v1/search", {"query": QUESTION, "rerank": "sometimes"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "rerank"


def test_a_hung_reranker_gives_503_within_its_timeout_then_recovers(served: Served) -> None:
    pid = replica_pid("Reranker")
    body = {"query": QUESTION, "top_k": 3}
    os.kill(pid, signal.SIGSTOP)  # a stuck reranker (a hung GPU, a deadlock): calls get no answer
    try:
        started = time.monotonic()
        res = post("/v1/search", body, timeout=60)
        elapsed = time.monotonic() - started
        assert res.status_code == 503, res.text
        assert "reranker" in res.json()["error"]["message"] and res.headers.get("retry-after")
        assert RERANKER_TIMEOUT_S <= elapsed < RERANKER_TIMEOUT_S + 10  # its own timeout, not a hang
        query = post("/v1/query", {"question": QUESTION}, timeout=60)
        assert query.status_code == 503 and "reranker" in query.json()["error"]["message"]
        # retrieval without it still works, and readiness names the culprit
        assert post("/v1/search", {**body, "rerank": False}, timeout=60).status_code == 200
        ready = get("/readyz", timeout=60)
        assert ready.status_code == 503 and ready.json()["checks"]["reranker"].startswith("unavailable")
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and post("/v1/search", body, timeout=60).status_code != 200:
        time.sleep(0.5)
    assert post("/v1/search", body, timeout=60).status_code == 200
    assert get("/readyz", timeout=60).status_code == 200
    print(f"\nreranker hung: 503 after {elapsed:.1f} s (reranker.timeout_s {RERANKER_TIMEOUT_S:g} s)")
