"""Retrieval: a checked Search run by the Retriever (embed the query, search Milvus dense or hybrid, rerank
the candidates when asked, cap per source) and its result, with the adapters that let a local Encoder or
cross-encoder stand where the Serve deployments' handles do. The RAG pipeline (rag.py) and the entry points
(/v1/search, ``ragserve search``, ``ragserve eval``) build on it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ragserve.config import RetrievalConfig
from ragserve.limits import MAX_TOP_K, check_question, check_top_k
from ragserve.observability import metrics
from ragserve.observability.tracing import stage
from ragserve.store.filters import DEFAULT_ACCESS, Access, Filter
from ragserve.store.milvus import Hit, MilvusStore

log = logging.getLogger(__name__)
QueryEmbedder = Callable[[list[str]], Awaitable[np.ndarray]]
# (question, passages) -> one relevance score per passage, higher is better (a cross-encoder).
Rerank = Callable[[str, Sequence[str]], Awaitable[np.ndarray]]


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a perf_counter reading), as timings report them."""
    return round((time.perf_counter() - start) * 1000, 2)


def local_query_embedder(encoder: Any) -> QueryEmbedder:
    """Adapt a synchronous Encoder (CLI, tests) to the async interface the pipeline uses."""

    async def embed(texts: list[str]) -> np.ndarray:
        return encoder.embed_queries(texts)

    return embed


def local_reranker(scorer: Any) -> Rerank:
    """Adapt a synchronous CrossEncoderScorer (CLI, eval) to the async interface the pipeline uses."""

    async def rerank(query: str, passages: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(scorer.score, query, passages)

    return rerank


def resolve_top_k(requested: int | None, configured: int) -> int:
    """The chunks a request retrieves: its own top_k, else the configured default (prompt.top_k). The one
    place that default is applied: the HTTP service, the CLI and the pipeline all call this."""
    return configured if requested is None else requested


@dataclass(frozen=True)
class Search:
    """One retrieval as the Retriever runs it. Trusted: an entry point builds it with ``checked``, the
    pipeline from a RagRequest that checked itself (its follow-up queries are bounded where they are made,
    conversation.py)."""

    query: str
    top_k: int
    where: Filter | None = None
    rerank: bool | None = None  # None: rerank when a reranker is deployed
    access: Access | None = None  # None: the Retriever's own

    @classmethod
    def checked(
        cls,
        query: str,
        top_k: int,
        where: Filter | None = None,
        rerank: bool | None = None,
        access: Access | None = None,
        *,
        max_top_k: int = MAX_TOP_K,
    ) -> Search:
        """A search from client input: top_k within ``max_top_k`` (router.max_top_k for HTTP), the query
        stripped and bounded; ValueError naming the field otherwise."""
        top_k = check_top_k(top_k, max_top_k)
        return cls(check_question(query, "query"), top_k, where, rerank, access)


@dataclass
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float]
    best_similarity: float = -1.0  # the best cosine among the chunks ranked (abstention's input)


# What a question names on purpose: a capitalised word inside it (Oracle), an acronym (SLA), a word with an
# inner capital, digit, dot, dash or underscore (GraphQL, tlsMode, user_id). Common words never count.
_TOKEN = re.compile(r"[A-Za-z][\w.\-]*\w|[A-Za-z]")
_NAMED = re.compile(r"[a-z][A-Z]|[_\d.\-]")
# fmt: off
_COMMON = frozenset({
    "a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "was", "be", "do", "does",
    "did", "how", "what", "which", "who", "when", "where", "why", "can", "could", "should", "would",
    "will", "i", "my", "me", "we", "our", "you", "your", "it", "its", "this", "that", "these", "those",
    "with", "from", "by", "as", "at", "if", "not", "no", "yes", "any", "all", "some", "there", "their",
    "they", "than", "then", "so", "such", "into", "about", "over", "under", "up", "out", "get", "set",
    "use", "using", "vs", "via", "per", "each", "one", "two", "new",
})
# fmt: on


def named_terms(question: str) -> list[str]:
    """The terms ``question`` names on purpose (see _TOKEN above), in order."""
    terms = []
    for i, token in enumerate(_TOKEN.findall(question)):
        if token.lower() in _COMMON:
            continue
        capitalised = i > 0 and token[0].isupper()
        if capitalised or (token.isupper() and len(token) > 1) or _NAMED.search(token):
            terms.append(token)
    return terms


def unexplained_terms(question: str, hits: Sequence[Hit]) -> list[str]:
    """The question's named terms that no hit's title or chunk contains (any case): what it asks about
    that nothing retrieved mentions. Abstention's second signal (retrieval.weak_relevance). A substring
    match, so a longer form explains a term ("REST" by "RESTful": word boundaries abstained on one of our
    answerable questions)."""
    text = " ".join(f"{h.title} {h.chunk}" for h in hits).lower()
    return [t for t in named_terms(question) if t.lower() not in text]


def hit_dict(hit: Hit, with_chunk: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": hit.source,
        "title": hit.title,
        "chunk_index": hit.chunk_index,
        "score": round(hit.score, 6),
    }
    if with_chunk:
        out["chunk"] = hit.chunk
    return out


def cap_per_source(hits: Sequence[Hit], per_source: int | None, top_k: int) -> list[Hit]:
    """The first top_k hits, keeping at most ``per_source`` of any one source (order kept)."""
    if per_source is None:
        return list(hits[:top_k])
    kept: list[Hit] = []
    seen: dict[str, int] = {}
    for hit in hits:
        if seen.get(hit.source, 0) < per_source:
            seen[hit.source] = seen.get(hit.source, 0) + 1
            kept.append(hit)
            if len(kept) == top_k:
                break
    return kept


class Retriever:
    """Embed the query, search Milvus (dense or hybrid), optionally rerank the candidates, cap per source."""

    def __init__(
        self,
        embed_queries: QueryEmbedder,
        store: MilvusStore,
        cfg: RetrievalConfig | None = None,
        rerank: Rerank | None = None,
        access: Access | None = DEFAULT_ACCESS,
    ):
        """``access``: what a search that names none may see: the default tenant for a single-tenant
        deployment and the CLI (its --tenant); None makes every search name its caller's (the router)."""
        self.embed_queries = embed_queries
        self.store = store
        self.cfg = cfg or RetrievalConfig()  # the config model's defaults, as everywhere
        self.rerank = rerank  # None: no reranker deployed (reranker.enabled false)
        self.access = access

    def _reranks(self, requested: bool | None) -> bool:
        """A request's ``rerank`` flag: null follows whether a reranker is deployed; true needs one."""
        if requested and self.rerank is None:
            raise ValueError("rerank: no reranker is deployed (reranker.enabled is false)")
        return self.rerank is not None if requested is None else requested

    async def search(
        self,
        query: str,
        top_k: int,
        where: Filter | None = None,
        rerank: bool | None = None,
        *,
        access: Access | None = None,
    ) -> SearchResult:
        """``run`` on client input (the eval, scripts): the query and top_k checked first (Search.checked)."""
        return await self.run(Search.checked(query, top_k, where, rerank, access))

    async def run(self, search: Search) -> SearchResult:
        """The chunks ``search.access`` (None: the Retriever's) may see that ``search.where`` selects, best
        first. The search is trusted: checked where it was built."""
        scope = search.access or self.access
        if scope is None:
            raise RuntimeError("a search must name whose documents it may see (Access)")
        query, top_k = search.query, search.top_k
        reranking = self._reranks(search.rerank)
        t0 = time.perf_counter()
        with stage("embed"):
            vector = await self.embed_queries([query])
        embed_ms = elapsed_ms(t0)
        t1 = time.perf_counter()
        with stage("milvus.search", mode=self.cfg.mode, limit=top_k) as span:
            # pymilvus is synchronous: keep the event loop free for other requests.
            hits = await asyncio.to_thread(
                self._search, query, vector[0], top_k, search.where, reranking, scope
            )
            span.set_attribute("hits", len(hits))
        timings = {"embed_ms": embed_ms, "search_ms": elapsed_ms(t1)}
        if reranking:
            # Coverage is judged on every candidate scored: the reranker's order is not a cosine order.
            best = max((h.similarity for h in hits), default=-1.0)
            t2 = time.perf_counter()
            with stage("rerank", candidates=len(hits)):
                hits = await self._rerank(query, hits)
            timings["rerank_ms"] = elapsed_ms(t2)
        hits = cap_per_source(hits, self.cfg.max_chunks_per_source, top_k)
        if not reranking:
            best = max((h.similarity for h in hits), default=-1.0)
        metrics.observe_stages(timings, ("embed", "search", "rerank"))
        metrics.RETRIEVED_CHUNKS.observe(len(hits))
        return SearchResult(hits, timings, best)

    async def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The candidates in the cross-encoder's order (ties keep the fused order), each hit's ``score``
        replaced by the reranker's."""
        assert self.rerank is not None
        scores = await self.rerank(query, [f"{h.title}\n{h.chunk}" for h in hits])
        if len(scores) != len(hits):
            raise RuntimeError(f"the reranker returned {len(scores)} scores for {len(hits)} passages")
        order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
        return [replace(hits[i], score=float(scores[i])) for i in order]

    def covers(self, query: str, result: SearchResult) -> bool:
        """Whether the documents cover ``query`` (the text searched): the best chunk's cosine similarity to
        it reaches retrieval.min_relevance, and, below retrieval.weak_relevance, every term the question
        names (``named_terms``) appears in some returned chunk. The dense similarity, not the fused or
        reranked score: RRF scores are rank-only, a cross-encoder's scale is its own (docs/retrieval.md)."""
        c, best = self.cfg, result.best_similarity
        if c.min_relevance is not None and best < c.min_relevance:
            return False
        return (
            c.weak_relevance is None or best >= c.weak_relevance or not unexplained_terms(query, result.hits)
        )

    def _search(
        self,
        query: str,
        vector: np.ndarray,
        top_k: int,
        where: Filter | None,
        reranking: bool,
        access: Access,
    ) -> list[Hit]:
        """The ranked candidates: ``candidates`` of them for the reranker; with a per-source cap, 4 x top_k
        (a cap of 2 rarely needs more, and every hit carries its vector back from Milvus); else top_k."""
        c = self.cfg
        if reranking:
            limit = max(top_k, c.candidates)
        elif c.max_chunks_per_source:
            limit = min(max(top_k, c.candidates), 4 * top_k)
        else:
            limit = top_k
        if c.mode == "dense":
            return self.store.search(vector[None, :], limit, where, access=access)[0]
        return self.store.hybrid_search(
            vector,
            query,
            limit,
            where,
            access=access,
            candidates=c.candidates,
            fusion=c.fusion,
            rrf_k=c.rrf_k,
            dense_weight=c.dense_weight,
        )
