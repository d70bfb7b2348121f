"""The RAG request path: retrieve (retrieval.py) -> prompt -> generate, streamed as events with per-stage
timings.

The same code runs in-process (the CLI: a local Encoder and VLLMGenerator) and in the Ray Serve router
(the embedder and generator are deployment handles behind the same small interfaces); ``build_pipeline``
is the one place that wires it, for every caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import InitVar, dataclass, field, replace
from typing import Any

from ragserve.config import AppConfig, ConversationMethod, SamplingConfig
from ragserve.conversation import (
    REWRITE_FALLBACK,
    RetrievalQuery,
    appended,
    clean_rewrite,
    fuse,
    rewrite_messages,
)
from ragserve.generator import evidence
from ragserve.generator.citations import Citation, cite
from ragserve.generator.engine import TextGenerator
from ragserve.generator.prompt import PromptBuilder
from ragserve.limits import MAX_QUESTION_CHARS, MAX_TOP_K, check_question, check_top_k
from ragserve.observability import metrics
from ragserve.observability.tracing import stage
from ragserve.retrieval import (
    QueryEmbedder,
    Rerank,
    Retriever,
    Search,
    SearchResult,
    cap_per_source,
    elapsed_ms,
    resolve_top_k,
)
from ragserve.store.filters import DEFAULT_ACCESS, Access, Filter
from ragserve.store.milvus import Hit, MilvusStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RagRequest:
    """One question to answer, built once at the edge (an HTTP body, CLI flags, an eval item), checked
    here when built (ValueError naming the field) and handed down as is: nothing below checks it again."""

    question: str  # stored stripped
    sampling: SamplingConfig
    top_k: int | None = None  # None: the pipeline's configured one (resolve_top_k); entry points resolve it
    where: Filter | None = None  # a store Filter checks itself when built
    history: Sequence[dict[str, str]] = ()  # earlier chat turns, oldest first
    request_id: str | None = None  # the engine's id (abort, logs)
    rerank: bool | None = None  # None: rerank when a reranker is deployed
    # A chat's user/assistant turns before the question, oldest first (no operator lines): what a follow-up's
    # retrieval query is built from (conversation.py); empty for a one-turn chat or a plain query.
    turns: Sequence[dict[str, str]] = ()
    conversation: ConversationMethod | None = None  # None: retrieval.conversation
    # Whose documents the answer may draw on (the caller's: router/auth.py Principal.access); every search
    # of the request, rewrites and fused ones included, is restricted to it. None: the Retriever's own.
    access: Access | None = None
    max_top_k: InitVar[int] = MAX_TOP_K  # the caller's own bound on top_k, if lower (router.max_top_k)

    def __post_init__(self, max_top_k: int) -> None:
        if self.top_k is not None:  # top_k first: the order the HTTP API has always reported them in
            check_top_k(self.top_k, max_top_k)
        object.__setattr__(self, "question", check_question(self.question))

    def search(self, query: str, top_k: int) -> Search:
        """A search of this request's (its question, or a follow-up's query built from it)."""
        return Search(query, top_k, self.where, self.rerank, self.access)


@dataclass
class Retrieved:
    """First event of an answer: what was retrieved and how long it took."""

    hits: list[Hit]
    timings: dict[str, float]
    contexts_dropped: int
    query: RetrievalQuery  # what was searched, and how (a chat's follow-up: conversation.py)
    grounded: bool = True  # False: nothing relevant was found, the answer says so (no generation)


@dataclass
class Delta:
    text: str


@dataclass
class Done:
    usage: dict[str, int]
    timings: dict[str, float]
    finish_reason: str | None
    citations: list[Citation] = field(default_factory=list)  # which sentence rests on which source
    evidence_at: int | None = None  # where the evidence section starts in the streamed text (None: none)


Event = Retrieved | Delta | Done


@dataclass
class Answer:
    answer: str
    sources: list[Hit]  # best first, as retrieved; the prompt lists them best last
    usage: dict[str, int]
    timings: dict[str, float]
    finish_reason: str | None = None
    contexts_dropped: int = 0
    grounded: bool = True
    citations: list[Citation] = field(default_factory=list)
    evidence_at: int | None = None  # answer[:evidence_at] is the model's text, the rest quotes the context


class RagPipeline:
    def __init__(
        self,
        retriever: Retriever,
        generator: TextGenerator,
        prompt: PromptBuilder,
        top_k: int,
        not_covered_answer: str,  # prompt.not_covered_answer
        evidence_quotes: int = 0,  # prompt.evidence_quotes
    ):
        self.retriever = retriever
        self.generator = generator
        self.prompt = prompt
        self.top_k = top_k
        self.not_covered_answer = not_covered_answer
        self.evidence_quotes = evidence_quotes

    async def stream(self, req: RagRequest) -> AsyncIterator[Event]:
        """Yield Retrieved, a Delta per generated piece, then Done. ``req`` checked itself when built; a
        question too long for the model's context raises (PromptTooLongError) before any event."""
        started = time.perf_counter()
        question, sampling = req.question, req.sampling
        found, query = await self.retrieve(req)
        t_prompt = time.perf_counter()
        # Built even when abstaining: a question that cannot fit the model is bad input either way.
        with stage("prompt.build", contexts=len(found.hits)):
            built = await self.prompt.build_async(question, found.hits, sampling.max_tokens, req.history)
        timings = {**found.timings, "prompt_ms": elapsed_ms(t_prompt)}
        if not self.retriever.covers(query.text, found):
            async for event in self._not_covered(found.hits, timings, started, query):
                yield event
            return
        t_gen = time.perf_counter()
        # Submitted before the sources go out: the engine prefills while the caller writes them.
        deltas = await self.generator.submit(built.token_ids, sampling, req.request_id)
        ttft_ms: float | None = None
        completion_tokens, finish = 0, None
        engine: dict[str, float] = {}
        pieces: list[str] = []
        try:
            yield Retrieved(found.hits, dict(timings), built.dropped, query)
            # Entered after the yield above (which returns to another task): a span is entered and left in
            # one task. It stays open across the yields below and ends with the last delta.
            with stage("generate", prompt_tokens=len(built.token_ids)) as span:
                async for delta in deltas:
                    if ttft_ms is None and delta.completion_tokens:
                        ttft_ms = elapsed_ms(t_gen)
                        metrics.TTFT.observe(time.perf_counter() - started)
                        span.add_event("first_token", {"ttft_ms": ttft_ms})
                    if delta.engine_ttft_s is not None:
                        engine["ttft"] = delta.engine_ttft_s
                    if delta.engine_total_s is not None:
                        engine["generate"] = delta.engine_total_s
                    completion_tokens, finish = delta.completion_tokens, delta.finish_reason
                    if delta.text:
                        pieces.append(delta.text)
                        yield Delta(delta.text)
                span.set_attribute("completion_tokens", completion_tokens)
        finally:
            await deltas.aclose()  # aborts the request if the caller stopped reading
        text = "".join(pieces)
        # What the prompt held, by source number: the text the model saw (an injected instruction the prompt
        # left out is neither quoted nor cited).
        held = list(reversed(built.texts))
        found_citations = cite(text, held)
        quotes = self._evidence(query.text, text, held)  # a follow-up: what it means (conversation.py)
        if quotes:
            section, spans = evidence.render(quotes)
            yield Delta(section)
            found_citations += _quoted(quotes, spans, len(text))
        timings.update(generate_ms=elapsed_ms(t_gen), ttft_ms=ttft_ms or 0.0, total_ms=elapsed_ms(started))
        _engine_share(timings, engine)
        usage = {
            "prompt_tokens": len(built.token_ids),
            "completion_tokens": completion_tokens,
            "total_tokens": len(built.token_ids) + completion_tokens,
        }
        metrics.observe_stages(timings, ("prompt", "generate"))
        metrics.TOKENS.inc(usage["prompt_tokens"], direction="in")
        metrics.TOKENS.inc(completion_tokens, direction="out")
        yield Done(usage, timings, finish, found_citations, len(text) if quotes else None)

    def _evidence(self, query: str, answer: str, held: list[str]) -> list[evidence.Quote]:
        """Quotes for the evidence section: none when off, or when the model said the context does not
        cover the question."""
        if not self.evidence_quotes or self.not_covered_answer.rstrip(".").lower() in answer.lower():
            return []
        return evidence.select(query, answer, held, self.evidence_quotes)

    async def _not_covered(
        self, hits: list[Hit], timings: dict[str, float], started: float, query: RetrievalQuery
    ) -> AsyncIterator[Event]:
        """Abstain: say the documents do not cover the question, without calling the generator."""
        metrics.ABSTENTIONS.inc()
        yield Retrieved(hits, dict(timings), 0, query, grounded=False)
        yield Delta(self.not_covered_answer)
        timings.update(generate_ms=0.0, ttft_ms=0.0, total_ms=elapsed_ms(started))
        yield Done({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, timings, "stop")

    async def retrieve(self, req: RagRequest) -> tuple[SearchResult, RetrievalQuery]:
        """Search for the question, or for what a chat's follow-up means (conversation.py)."""
        question = req.question
        top_k = resolve_top_k(req.top_k, self.top_k)
        earlier = [t["content"] for t in req.turns]
        method = (req.conversation or self.retriever.cfg.conversation) if earlier else "last"
        if method != "rewrite":
            return await self._search_by(method, question, earlier, top_k, req)
        started = time.perf_counter()
        rewritten, fallback = await self._rewrite(question, req)
        rewrite_ms = elapsed_ms(started)
        if rewritten is not None:
            found, query = await self._search(rewritten, top_k, req), RetrievalQuery(rewritten, "rewrite")
        else:
            found, query = await self._search_by(REWRITE_FALLBACK, question, earlier, top_k, req)
            query = replace(query, fallback=fallback)
        found.timings["rewrite_ms"] = rewrite_ms
        return found, query

    async def _search_by(
        self, method: ConversationMethod, question: str, earlier: list[str], top_k: int, req: RagRequest
    ) -> tuple[SearchResult, RetrievalQuery]:
        """The search of a method that needs no generator: last, append or fused."""
        if method == "last":
            return await self._search(question, top_k, req), RetrievalQuery(question, "last")
        if method == "append":
            text = appended(question, earlier, self.retriever.cfg.conversation_messages)
            return await self._search(text, top_k, req), RetrievalQuery(text, "append")
        return await self._fused(question, earlier, top_k, req)

    async def _search(self, text: str, top_k: int, req: RagRequest) -> SearchResult:
        return await self.retriever.run(req.search(text, top_k))

    async def _fused(
        self, question: str, earlier: list[str], top_k: int, req: RagRequest
    ) -> tuple[SearchResult, RetrievalQuery]:
        """The follow-up alone and with the conversation, searched at once and fused by reciprocal rank."""
        cfg = self.retriever.cfg
        text = appended(question, earlier, cfg.conversation_messages)
        alone, together = await asyncio.gather(
            self._search(question, top_k, req), self._search(text, top_k, req)
        )
        fused = fuse([alone.hits, together.hits], 2 * top_k, cfg.rrf_k)
        hits = cap_per_source(fused, cfg.max_chunks_per_source, top_k)
        # The two searches ran side by side: each stage took as long as its slower side.
        timings = {k: max(alone.timings.get(k, 0.0), together.timings.get(k, 0.0)) for k in together.timings}
        best = max(alone.best_similarity, together.best_similarity)
        return SearchResult(hits, timings, best), RetrievalQuery(text, "fused")

    async def _rewrite(self, question: str, req: RagRequest) -> tuple[str | None, str | None]:
        """The follow-up rewritten by the Generator as a standalone question, or (None, why not)."""
        cfg = self.retriever.cfg
        messages = rewrite_messages(question, req.turns, MAX_QUESTION_CHARS)
        sampling = req.sampling.model_copy(update={"temperature": 0.0, "max_tokens": cfg.rewrite_max_tokens})

        async def generate() -> str:
            ids = await self.prompt.encode_async(messages)
            request_id = f"{req.request_id}-rewrite" if req.request_id else None
            deltas = await self.generator.submit(ids, sampling, request_id)
            try:
                return "".join([d.text async for d in deltas])
            finally:
                await deltas.aclose()

        try:
            text = await asyncio.wait_for(generate(), cfg.rewrite_timeout_s)
        except TimeoutError:
            return None, f"rewrite took longer than retrieval.rewrite_timeout_s ({cfg.rewrite_timeout_s} s)"
        except Exception as err:  # a generator down or refusing: retrieval must still answer
            log.warning("rewrite of a follow-up failed", exc_info=True)
            return None, f"rewrite failed ({type(err).__name__})"
        rewritten = clean_rewrite(text, question)
        return (rewritten, None) if rewritten else (None, "rewrite gave no usable question")

    async def start(self, req: RagRequest) -> tuple[Retrieved, AsyncIterator[Event]]:
        """Run retrieval and prompt building now (bad input fails here, before any stream starts);
        return what was retrieved and the remaining generation events."""
        events = self.stream(req)
        retrieved = await anext(events)
        assert isinstance(retrieved, Retrieved)
        return retrieved, events

    async def answer(self, req: RagRequest) -> Answer:
        retrieved, events = await self.start(req)
        text, done = await collect(events)
        return Answer(
            text,
            retrieved.hits,
            done.usage,
            done.timings,
            done.finish_reason,
            retrieved.contexts_dropped,
            retrieved.grounded,
            done.citations,
            done.evidence_at,
        )


def build_pipeline(
    cfg: AppConfig,
    embed_queries: QueryEmbedder,
    store: MilvusStore,
    generator: TextGenerator,
    tokenizer: Any,
    rerank: Rerank | None = None,
    access: Access | None = DEFAULT_ACCESS,
) -> RagPipeline:
    """The RAG pipeline from config and its parts: the CLI, the router and the load tests all call this.

    ``embed_queries`` is ``local_query_embedder(Encoder)`` in-process or the embedder pool's adapter in the
    router; ``tokenizer`` is the generator model's (prompts are built and trimmed in token ids); ``rerank``
    is the reranker pool's adapter or ``local_reranker``, given exactly when reranker.enabled; ``access``:
    what a request naming none may see (Retriever)."""
    if (rerank is not None) != cfg.reranker.enabled:
        raise ValueError(
            f"reranker.enabled is {cfg.reranker.enabled} but a reranker was {'not ' * (rerank is None)}given"
        )
    prompt = PromptBuilder(
        tokenizer,
        cfg.prompt.system_prompt,
        cfg.generator.max_model_len,
        remove_instructions=cfg.prompt.remove_instructions,
    )
    retriever = Retriever(embed_queries, store, cfg.retrieval, rerank, access)
    return RagPipeline(
        retriever,
        generator,
        prompt,
        cfg.prompt.top_k,
        cfg.prompt.not_covered_answer,
        cfg.prompt.evidence_quotes,
    )


def _quoted(quotes: Sequence[evidence.Quote], spans: Sequence[tuple[int, int]], at: int) -> list[Citation]:
    """A ``quoted`` citation for each line of the evidence section, which starts at ``at``."""
    return [
        Citation(at + start, at + end, (q.source,), "quoted")
        for q, (start, end) in zip(quotes, spans, strict=True)
    ]


def _engine_share(timings: dict[str, float], engine: dict[str, float]) -> None:
    """Add the engine's own TTFT and request time (``engine_ttft_ms``, ``engine_generate_ms``) next to ours
    and record both sides: what the engine accounts for, and what the framework adds around it (handle
    hops, queueing at the replica, serialisation, coalescing)."""
    for phase, engine_s in engine.items():
        ours_s = timings[f"{phase}_ms"] / 1000
        timings[f"engine_{phase}_ms"] = round(engine_s * 1000, 2)
        metrics.ENGINE_SECONDS.observe(engine_s, phase=phase)
        # The engine's interval lies inside ours; a negative difference is clock granularity.
        metrics.FRAMEWORK_OVERHEAD.observe(max(0.0, ours_s - engine_s), phase=phase)


async def collect(events: AsyncIterator[Event]) -> tuple[str, Done]:
    """Drain the generation events of a stream: the whole answer text, stripped, and the final Done (its
    citations' spans moved to match the stripped text)."""
    parts: list[str] = []
    done: Done | None = None
    async for event in events:
        if isinstance(event, Delta):
            parts.append(event.text)
        elif isinstance(event, Done):
            done = event
    if done is None:
        raise RuntimeError("generation ended without a final event")
    text = "".join(parts)
    lead = len(text) - len(text.lstrip())
    if lead:
        done.citations = [replace(c, start=c.start - lead, end=c.end - lead) for c in done.citations]
        if done.evidence_at is not None:
            done.evidence_at -= lead
    return text.strip(), done
