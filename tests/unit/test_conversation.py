"""A chat follow-up's retrieval query (conversation.py and RagPipeline.retrieve), with a recording retriever
and scripted generators: which text is searched per method, the rewrite and its fallbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ragserve.config import RetrievalConfig, SamplingConfig
from ragserve.conversation import appended, clean_rewrite, fuse
from ragserve.generator.engine import GenerationDelta, GeneratorError
from ragserve.limits import MAX_QUESTION_CHARS
from ragserve.rag import RagPipeline, RagRequest
from ragserve.retrieval import Search, SearchResult
from ragserve.store.filters import Access
from ragserve.store.milvus import Hit

TURNS = [
    {"role": "user", "content": "How do I enable mmap for a collection?"},
    {"role": "assistant", "content": "Set mmap.enabled to true in the collection properties."},
]
FOLLOW_UP = "and for a single field?"


def hit(i: str, similarity: float = 0.5) -> Hit:
    return Hit(i, 0.0, f"{i}.md", i, f"chunk {i}", 0, similarity)


class Recording:
    """A retriever that records every text searched and returns a fixed ranking per text."""

    def __init__(self, cfg: RetrievalConfig, rankings: dict[str, list[Hit]] | None = None):
        self.cfg, self.rankings, self.searched = cfg, rankings or {}, []
        self.accesses: list[Any] = []

    async def run(self, search: Search) -> SearchResult:
        self.searched.append(search.query)
        self.accesses.append(search.access)
        hits = self.rankings.get(search.query, [hit("x")])
        return SearchResult(
            hits[: search.top_k], {"embed_ms": 1.0, "search_ms": 2.0}, max(h.similarity for h in hits)
        )


class Scripted:
    """A generator that answers a rewrite with ``text`` after ``delay_s``, or raises ``error``."""

    def __init__(self, text: str = "", delay_s: float = 0.0, error: Exception | None = None):
        self.text, self.delay_s, self.error, self.calls = text, delay_s, error, 0

    async def submit(self, ids: list[int], sampling: SamplingConfig, request_id: Any = None) -> Any:
        self.calls += 1
        self.sampling = sampling
        if self.error:
            raise self.error
        await asyncio.sleep(self.delay_s)
        text = self.text

        class Deltas:
            async def __aiter__(self) -> Any:
                yield GenerationDelta(text, 3, 5, "stop")

            async def aclose(self) -> None:
                pass

        return Deltas()


class Ids:
    async def encode_async(self, messages: list[dict[str, str]]) -> list[int]:
        return [1, 2, 3]


ACCESS = Access("acme", frozenset({"hr"}))


def retrieve(method: str, generator: Scripted, turns: Any = TURNS, **cfg: Any) -> tuple[Any, Any, Recording]:
    retriever = Recording(RetrievalConfig(conversation=method, **cfg))
    pipeline = RagPipeline(retriever, generator, Ids(), 5, "not covered")  # type: ignore[arg-type]
    req = RagRequest(FOLLOW_UP, SamplingConfig(), turns=turns, request_id="r", access=ACCESS)
    found, query = asyncio.run(pipeline.retrieve(req))
    return found, query, retriever


def test_appended_adds_earlier_messages_newest_first_within_the_limit() -> None:
    assert appended("q3", ["q1", "a1", "q2", "a2"], 6) == "q3\na2\nq2\na1\nq1"
    assert appended("q3", ["q1", "a1", "q2", "a2"], 2) == "q3\na2\nq2"
    assert appended("q", ["x" * MAX_QUESTION_CHARS], 3) == "q"  # a message that does not fit is left out


def test_fuse_ranks_by_reciprocal_rank_and_keeps_the_best_similarity() -> None:
    fused = fuse([[hit("a", 0.2), hit("b")], [hit("b"), hit("c"), hit("a", 0.9)]], 10, rrf_k=60)
    assert [h.id for h in fused] == ["b", "a", "c"]  # b: 1/62 + 1/61; a: 1/61 + 1/63
    assert next(h for h in fused if h.id == "a").similarity == 0.9


def test_clean_rewrite_takes_the_question_or_nothing() -> None:
    assert clean_rewrite('Standalone question: "How is mmap enabled for one field?"\nextra', "q") == (
        "How is mmap enabled for one field?"
    )
    assert clean_rewrite("  \n", "q") is None
    assert clean_rewrite("word " * 200, "short question") is None  # an answer, not a question


def test_a_one_turn_chat_searches_its_message_alone_without_a_rewrite() -> None:
    generator = Scripted("unused")
    found, query, retriever = retrieve("rewrite", generator, turns=())
    assert (query.method, query.text, query.fallback) == ("last", FOLLOW_UP, None)
    assert retriever.searched == [FOLLOW_UP] and generator.calls == 0 and "rewrite_ms" not in found.timings


WITH_HISTORY = f"{FOLLOW_UP}\n{TURNS[1]['content']}\n{TURNS[0]['content']}"


@pytest.mark.parametrize(
    ("method", "searched"),
    [
        ("last", [FOLLOW_UP]),
        ("append", [WITH_HISTORY]),
        ("fused", [FOLLOW_UP, WITH_HISTORY]),
    ],
)
def test_each_method_searches_its_text(method: str, searched: list[str]) -> None:
    _, query, retriever = retrieve(method, Scripted())
    assert sorted(retriever.searched) == sorted(searched) and query.method == method


def test_a_rewrite_is_searched_and_timed() -> None:
    generator = Scripted("How do I enable mmap for a single field?")
    found, query, retriever = retrieve("rewrite", generator)
    assert (query.method, query.text, query.fallback) == ("rewrite", generator.text, None)
    assert retriever.searched == [generator.text] and found.timings["rewrite_ms"] >= 0
    assert generator.sampling.temperature == 0.0 and generator.sampling.max_tokens == 64


@pytest.mark.parametrize(
    ("generator", "why"),
    [
        (Scripted(error=GeneratorError("generator replica died")), "rewrite failed (GeneratorError)"),
        (Scripted("late", delay_s=5), "rewrite took longer than retrieval.rewrite_timeout_s (0.2 s)"),
        (Scripted(""), "rewrite gave no usable question"),
    ],
)
def test_a_failed_or_slow_rewrite_falls_back_to_append_and_says_why(generator: Scripted, why: str) -> None:
    found, query, retriever = retrieve("rewrite", generator, rewrite_timeout_s=0.2)
    assert (query.method, query.fallback) == ("append", why)
    assert retriever.searched == [WITH_HISTORY] and "rewrite_ms" in found.timings


@pytest.mark.parametrize(
    ("method", "generator"),
    [
        ("last", Scripted()),
        ("append", Scripted()),
        ("fused", Scripted()),
        ("rewrite", Scripted("How do I enable mmap for a single field?")),
        ("rewrite", Scripted(error=GeneratorError("generator replica died"))),  # falls back to fused
    ],
)
def test_every_search_of_a_conversation_is_restricted_to_the_callers_access(
    method: str, generator: Scripted
) -> None:
    _, _, retriever = retrieve(method, generator)
    assert retriever.accesses and all(a == ACCESS for a in retriever.accesses), retriever.accesses
