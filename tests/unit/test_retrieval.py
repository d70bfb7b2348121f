"""Retrieval logic outside Milvus: the per-source cap, reranking order, the abstention rule, which servers
have BM25."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from ragserve.config import RetrievalConfig
from ragserve.retrieval import Retriever, SearchResult, cap_per_source, named_terms, unexplained_terms
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

    found = SearchResult([hit("a", 0.31), hit("b", 0.12)], {}, 0.31)
    assert retriever(0.3).covers("q", found) and not retriever(0.32).covers("q", found)
    assert not retriever(0.3).covers("q", SearchResult([], {}))  # nothing found: not covered
    assert retriever(None).covers("q", SearchResult([], {}))  # no threshold: never abstain


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        (
            "How do I configure Oracle Data Guard for a physical standby database?",
            ["Oracle", "Data", "Guard"],
        ),
        ("whats the capital of australia", []),  # nothing named on purpose: similarity alone decides
        ("tlsMode 1 vs 2 - which cert files does the server need?", ["tlsMode"]),
        ("how do I join two collections on a shared user_id field?", ["user_id"]),
        ("Is there an SLA? What does Zilliz Cloud promise?", ["SLA", "Zilliz", "Cloud"]),  # "What": common
    ],
)
def test_named_terms_are_capitalised_acronyms_or_code_like(question: str, terms: list[str]) -> None:
    assert named_terms(question) == terms


def test_a_weak_match_that_leaves_a_named_term_unexplained_abstains() -> None:
    cfg = RetrievalConfig(min_relevance=0.35, weak_relevance=0.45)
    retriever = Retriever(None, None, cfg)  # type: ignore[arg-type]
    chunk = "Milvus supports standby replicas through the replica number of a load call."
    hits = [Hit("1", 0.4, "replicas.md", "Replicas", chunk, 0, 0.4)]
    oracle = "How do I configure Oracle Data Guard standby?"
    assert unexplained_terms(oracle, hits) == ["Oracle", "Data", "Guard"]
    assert not retriever.covers(oracle, SearchResult(hits, {}, 0.4))  # weak and unexplained
    assert retriever.covers(oracle, SearchResult(hits, {}, 0.5))  # strong enough: the generator decides
    assert retriever.covers("How do Milvus replicas work?", SearchResult(hits, {}, 0.4))  # all explained
    assert not retriever.covers("How do Milvus replicas work?", SearchResult(hits, {}, 0.3))  # below min
    assert Retriever(None, None, RetrievalConfig(min_relevance=0.35)).covers(  # type: ignore[arg-type]
        oracle, SearchResult(hits, {}, 0.4)
    )  # weak_relevance unset: similarity alone
    with pytest.raises(ValueError, match="weak_relevance"):
        RetrievalConfig(min_relevance=0.4, weak_relevance=0.3)


def test_rerank_orders_by_the_scores_keeps_ties_in_fused_order_and_replaces_the_score() -> None:
    seen: list[tuple[str, list[str]]] = []

    async def scores(query: str, passages: Sequence[str]) -> np.ndarray:
        seen.append((query, list(passages)))
        return np.array([0.1, 0.9, 0.5, 0.9], dtype=np.float32)

    r = Retriever(None, None, RetrievalConfig(), scores)  # type: ignore[arg-type]
    fused = [hit("a", 0.8), hit("b", 0.7), hit("c", 0.6), hit("d", 0.5)]
    out = asyncio.run(r._rerank("q", fused))
    assert [h.source for h in out] == ["b", "d", "c", "a"]  # b before d: a tie keeps the fused order
    assert [h.score for h in out] == pytest.approx([0.9, 0.9, 0.5, 0.1])
    assert [h.similarity for h in out] == [0.7, 0.5, 0.6, 0.8]  # cosine kept for abstention
    assert seen == [("q", ["t\nc"] * 4)]  # the title and the chunk of each candidate


def test_rerank_flag_needs_a_deployed_reranker() -> None:
    without = Retriever(None, None, RetrievalConfig())  # type: ignore[arg-type]
    assert without._reranks(None) is False and without._reranks(False) is False
    with pytest.raises(ValueError, match=r"^rerank: no reranker is deployed"):
        without._reranks(True)

    async def scores(query: str, passages: Sequence[str]) -> np.ndarray:
        return np.zeros(len(passages), dtype=np.float32)

    with_one = Retriever(None, None, RetrievalConfig(), scores)  # type: ignore[arg-type]
    assert with_one._reranks(None) is True and with_one._reranks(False) is False


def test_a_reranker_returning_the_wrong_number_of_scores_is_an_error() -> None:
    async def short(query: str, passages: Sequence[str]) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)

    r = Retriever(None, None, RetrievalConfig(), short)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="1 scores for 2 passages"):
        asyncio.run(r._rerank("q", [hit("a"), hit("b")]))


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
    from ragserve.store.schema import server_has_bm25

    assert server_has_bm25(version) is bm25
