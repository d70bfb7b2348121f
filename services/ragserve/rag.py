"""The RAG request path in-process: embed -> search -> prompt -> generate, with per-stage timings.

The CLI uses it directly; the Ray Serve router composes the same pieces across deployments.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragserve.config import SamplingConfig
from ragserve.embedder.encoder import TextEncoder
from ragserve.generator.engine import TextGenerator
from ragserve.generator.prompt import PromptBuilder
from ragserve.store import filters
from ragserve.store.milvus import Hit, MilvusStore

MAX_QUESTION_CHARS = 8000


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def validate_question(text: str, field_name: str = "question") -> str:
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise ValueError(f"{field_name}: must not be empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise ValueError(f"{field_name}: at most {MAX_QUESTION_CHARS} characters (got {len(text)})")
    return text


@dataclass
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float]


@dataclass
class Answer:
    answer: str
    sources: list[Hit]  # best first, as retrieved; the prompt lists them best last
    usage: dict[str, int]
    timings: dict[str, float]
    finish_reason: str | None = None
    contexts_dropped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def hit_dict(hit: Hit) -> dict[str, Any]:
    return {
        "source": hit.source,
        "title": hit.title,
        "chunk_index": hit.chunk_index,
        "score": round(hit.score, 6),
        "chunk": hit.chunk,
    }


class Retriever:
    def __init__(self, encoder: TextEncoder, store: MilvusStore):
        self.encoder = encoder
        self.store = store

    def search(self, query: str, top_k: int, sources: Sequence[str] | None = None) -> SearchResult:
        query = validate_question(query, "query")
        if not 1 <= top_k <= 1000:
            raise ValueError(f"top_k: must be between 1 and 1000 (got {top_k})")
        t0 = time.perf_counter()
        vector = self.encoder.embed_queries([query])
        embed_ms = _ms(t0)
        t1 = time.perf_counter()
        expr = filters.source_in(list(sources)) if sources else ""
        hits = self.store.search(vector, top_k, expr)[0]
        return SearchResult(hits, {"embed_ms": embed_ms, "search_ms": _ms(t1)})


class RagPipeline:
    def __init__(self, retriever: Retriever, generator: TextGenerator, prompt: PromptBuilder, top_k: int):
        self.retriever = retriever
        self.generator = generator
        self.prompt = prompt
        self.top_k = top_k

    async def answer(
        self,
        question: str,
        sampling: SamplingConfig,
        top_k: int | None = None,
        sources: Sequence[str] | None = None,
    ) -> Answer:
        started = time.perf_counter()
        question = validate_question(question)
        found = self.retriever.search(question, top_k or self.top_k, sources)
        t_prompt = time.perf_counter()
        built = self.prompt.build(question, found.hits, sampling.max_tokens)
        prompt_ms = _ms(t_prompt)
        t_gen = time.perf_counter()
        ttft_ms: float | None = None
        parts: list[str] = []
        completion_tokens, finish = 0, None
        async for delta in self.generator.generate(built.token_ids, sampling):
            if ttft_ms is None and delta.completion_tokens:
                ttft_ms = _ms(t_gen)
            parts.append(delta.text)
            completion_tokens, finish = delta.completion_tokens, delta.finish_reason
        timings = {
            **found.timings,
            "prompt_ms": prompt_ms,
            "generate_ms": _ms(t_gen),
            "ttft_ms": ttft_ms or 0.0,
            "total_ms": _ms(started),
        }
        usage = {
            "prompt_tokens": len(built.token_ids),
            "completion_tokens": completion_tokens,
            "total_tokens": len(built.token_ids) + completion_tokens,
        }
        return Answer("".join(parts).strip(), found.hits, usage, timings, finish, built.dropped)
