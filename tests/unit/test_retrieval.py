"""Retrieval logic outside Milvus: the per-source cap, the abstention rule, which servers have BM25."""

from __future__ import annotations

import pytest

from ragserve.config import RetrievalConfig
from ragserve.rag import Retriever, cap_per_source
from ragserve.store.milvus import Hit


def hit(source: str, similarity: float = 0.5) -> Hit:
    return Hit(f"{source}-{similarity}", similarity, source, "t", "c", 0, similarity)


def test_cap_keeps_order_and_at_most_n_per_source() -> None:
    ranked = [hit("a", 0.9), hit("a", 0.8), hit("a", 0.7), hit("b", 0.6), hit("a", 0.5), hit("c", 0.4)]
    assert [h.source for h in cap_per_source(ranked, 2, 4)] == ["a", "a", "b", "c"]
    assert [h.source for h in cap_per_source(ranked, 1, 5)] == ["a", "b", "c"]  # fewer when sources run out
    assert cap_per_source(ranked, None, 3) == ranked[:3]


def test_covers_uses_the_best_similarity_against_min_relevance() -> None:
    def retriever(threshold: float | None) -> Retriever:
        return Retriever(None, None, RetrievalConfig(min_relevance=threshold))  # type: ignore[arg-type]

    hits = [hit("a", 0.31), hit("b", 0.12)]
    assert retriever(0.3).covers(hits) and not retriever(0.32).covers(hits)
    assert not retriever(0.3).covers([])  # nothing found: not covered
    assert retriever(None).covers([])  # no threshold: never abstain


@pytest.mark.parametrize(
    ("version", "bm25"),
    [
        ("v2.3.5-lite", False),  # PyPI's `milvus` server
        ("v2.4.23", False),
        ("v2.5.0", True),
        ("v2.6.16", True),
        ("v10.0.1", True),
        ("milvus_lite-3.2.2", True),  # Milvus Lite reports its own version
    ],
)
def test_bm25_is_expected_from_milvus_2_5_and_lite(version: str, bm25: bool) -> None:
    from ragserve.store.milvus import server_has_bm25

    assert server_has_bm25(version) is bm25
