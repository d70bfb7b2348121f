"""RagService: what the HTTP endpoints do, independent of FastAPI and Serve (handles come in from outside).

Every method takes the caller's Principal and hands its ``access`` down to the store, which restricts every
search, count and delete to it: another tenant's document is "not found" here, never "forbidden"."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from ragserve.config import AppConfig, SamplingConfig
from ragserve.generator.evidence import without_section
from ragserve.ingest.pipeline import Ingestor
from ragserve.ingest.plan import IngestReport
from ragserve.ingest.prepare import TextDocument
from ragserve.rag import Delta, Done, Event, RagPipeline, RagRequest, Retrieved, collect
from ragserve.retrieval import Search, SearchResult, hit_dict, resolve_top_k
from ragserve.router.auth import ANONYMOUS, Principal
from ragserve.router.models import (
    ChatRequest,
    DocumentsRequest,
    QueryRequest,
    Sampling,
    SearchRequest,
    store_filter,
)
from ragserve.store.filters import Access, Filter

log = logging.getLogger(__name__)
DOCUMENT_WRITE_RETRY_AFTER_S = 1.0  # Retry-After of a document write refused while others run


class ApiError(Exception):
    """An error with an HTTP status, a type and the offending field (rendered as {"error": {...}})."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        field: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.status, self.type, self.message, self.field = status, type_, message, field
        self.headers = (
            {"Retry-After": str(max(1, round(retry_after_s)))} if retry_after_s is not None else None
        )


def stream_error(err: Exception) -> dict[str, Any]:
    return {
        "error": {
            "type": "service_unavailable",
            "message": f"generation failed: {type(err).__name__}: {err}"[:300],
        }
    }


def sse(data: Any, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


class RagService:
    def __init__(
        self,
        cfg: AppConfig,
        pipeline: RagPipeline,
        ingestor: Ingestor,
        checks: dict[str, Any] | None = None,
    ):
        self.cfg = cfg
        self.pipeline = pipeline
        self.retriever = pipeline.retriever
        self.store = pipeline.retriever.store
        self.generator = pipeline.generator
        self.ingestor = ingestor
        self.checks = checks or {}
        self._writes = asyncio.Semaphore(cfg.router.document_writes)
        self.created = int(time.time())

    # ---- helpers --------------------------------------------------------------------------------------
    def _top_k(self, requested: int | None) -> int:
        """The request's top_k, or prompt.top_k; checked against router.max_top_k by the request built."""
        return resolve_top_k(requested, self.cfg.prompt.top_k)

    def _sampling(
        self, temperature: float | None, top_p: float | None, max_tokens: int | None
    ) -> SamplingConfig:
        base = self.cfg.generator.sampling
        update = {
            k: v
            for k, v in {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}.items()
            if v is not None
        }
        sampling = base.model_copy(update=update)
        if sampling.max_tokens >= self.cfg.generator.max_model_len:
            raise ApiError(
                422,
                "invalid_request_error",
                f"max_tokens must be below the model's context length {self.cfg.generator.max_model_len}",
                "max_tokens",
            )
        return sampling

    # ---- retrieval ------------------------------------------------------------------------------------
    async def search(self, req: SearchRequest, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        search = Search.checked(
            req.query,
            self._top_k(req.top_k),
            store_filter(req.filter),
            req.rerank,
            principal.access,
            max_top_k=self.cfg.router.max_top_k,
        )
        result: SearchResult = await self.retriever.run(search)
        return {"hits": [hit_dict(h) for h in result.hits], "timings": result.timings}

    # ---- RAG query ------------------------------------------------------------------------------------
    def _query_request(self, req: QueryRequest, access: Access) -> RagRequest:
        s = req.sampling or Sampling()
        return RagRequest(
            req.question,
            self._sampling(s.temperature, s.top_p, s.max_tokens),
            self._top_k(req.top_k),
            store_filter(req.filter),
            request_id=uuid.uuid4().hex,
            rerank=req.rerank,
            access=access,
            max_top_k=self.cfg.router.max_top_k,
        )

    async def _start_request(
        self, req: QueryRequest, principal: Principal
    ) -> tuple[Retrieved, AsyncIterator[Event]]:
        return await self.pipeline.start(self._query_request(req, principal.access))

    async def query(self, req: QueryRequest, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        retrieved, events = await self._start_request(req, principal)
        text, done = await collect(events)
        return {
            "answer": text,
            "sources": [hit_dict(h) for h in retrieved.hits],
            "usage": done.usage,
            "timings": done.timings,
            "model": self.generator.model_name,
            "finish_reason": done.finish_reason,
            "contexts_dropped": retrieved.contexts_dropped,
            "grounded": retrieved.grounded,
            "citations": [c.as_dict() for c in done.citations],
        }

    async def query_events(self, req: QueryRequest, principal: Principal = ANONYMOUS) -> AsyncIterator[str]:
        """SSE: `sources` event, `delta` events, a `done` event with usage and timings, then [DONE]."""
        retrieved, events = await self._start_request(req, principal)
        return self._query_sse(retrieved, events)

    async def _query_sse(self, retrieved: Retrieved, events: AsyncIterator[Any]) -> AsyncIterator[str]:
        sources = [hit_dict(h) for h in retrieved.hits]
        yield sse(
            {"sources": sources, "timings": retrieved.timings, "grounded": retrieved.grounded}, "sources"
        )
        try:
            async for event in events:
                if isinstance(event, Delta):
                    yield sse({"text": event.text}, "delta")
                elif isinstance(event, Done):
                    done = {
                        "usage": event.usage,
                        "timings": event.timings,
                        "finish_reason": event.finish_reason,
                        "citations": [c.as_dict() for c in event.citations],
                    }
                    yield sse(done, "done")
        except Exception as err:  # headers are already sent: report in-band, then end the stream cleanly
            yield sse(stream_error(err), "error")
        yield sse("[DONE]")

    # ---- OpenAI-compatible chat ----------------------------------------------------------------------
    def _chat_request(self, req: ChatRequest, access: Access) -> RagRequest:
        if req.model and req.model != self.generator.model_name:
            raise ApiError(404, "model_not_found", f"model {req.model!r} is not served here", "model")
        users = [i for i, m in enumerate(req.messages) if m.role == "user" and m.text().strip()]
        if not users:
            raise ApiError(
                422, "invalid_request_error", "messages must contain a non-empty user message", "messages"
            )
        last = users[-1]
        question = req.messages[last].text()
        turns = [  # an earlier answer without its quotes of the context (generator/evidence.py)
            {"role": m.role, "content": without_section(m.text()) if m.role == "assistant" else m.text()}
            for m in req.messages[:last]
            if m.role in ("user", "assistant") and m.text().strip()
        ]
        history = list(turns)
        operator = "\n".join(
            m.text() for m in req.messages if m.role in ("system", "developer") and m.text().strip()
        )
        if operator:  # the client's system prompt extends ours; it cannot remove the grounding rules
            history.insert(0, {"role": "user", "content": f"Operator instructions: {operator}"})
            history.insert(1, {"role": "assistant", "content": "Understood."})
        sampling = self._sampling(req.temperature, req.top_p, req.max_completion_tokens or req.max_tokens)
        return RagRequest(
            question,
            sampling,
            self._top_k(req.top_k),
            store_filter(req.filter),
            history,
            uuid.uuid4().hex,
            req.rerank,
            turns,
            req.conversation,
            access,
            self.cfg.router.max_top_k,
        )

    async def chat(self, req: ChatRequest, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        retrieved, events = await self.pipeline.start(self._chat_request(req, principal.access))
        text, done = await collect(events)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.generator.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": done.finish_reason or "stop",
                    "logprobs": None,
                }
            ],
            "usage": done.usage,
            "sources": [hit_dict(h, with_chunk=False) for h in retrieved.hits],
            **retrieved.query.as_dict(),
            "grounded": retrieved.grounded,
            "timings": done.timings,
            "citations": [c.as_dict() for c in done.citations],
        }

    async def chat_events(self, req: ChatRequest, principal: Principal = ANONYMOUS) -> AsyncIterator[str]:
        retrieved, events = await self.pipeline.start(self._chat_request(req, principal.access))
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return self._chat_sse(retrieved, events, include_usage)

    async def _chat_sse(
        self, retrieved: Retrieved, events: AsyncIterator[Any], include_usage: bool
    ) -> AsyncIterator[str]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.generator.model_name,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        # The chunk text too, unlike the JSON answer: a streaming client (the playground) has no other way
        # to show what an answer was built from; a JSON client can ask /v1/search.
        yield chunk(
            {"role": "assistant", "content": ""},
            sources=[hit_dict(h) for h in retrieved.hits],
            **retrieved.query.as_dict(),
            grounded=retrieved.grounded,
        )
        try:
            async for event in events:
                if isinstance(event, Delta):
                    yield chunk({"content": event.text})
                elif isinstance(event, Done):
                    yield chunk(
                        {},
                        event.finish_reason or "stop",
                        timings=event.timings,
                        citations=[c.as_dict() for c in event.citations],
                    )
                    if include_usage:
                        yield sse({**base, "choices": [], "usage": event.usage})
        except Exception as err:  # headers are already sent: report in-band (the openai client raises it)
            yield sse(stream_error(err))
        yield sse("[DONE]")

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.generator.model_name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "ragserve",
                }
            ],
        }

    # ---- documents ------------------------------------------------------------------------------------
    async def add_documents(self, req: DocumentsRequest, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        """At most router.document_writes at once per replica: a write holds a worker thread for as long as
        its chunks take to embed, and searches need those threads too. More are refused at once (429).

        Documents go to the caller's tenant. A document's ``groups`` must be among the caller's own (a
        principal with every group may set any): 403 naming ``documents.N.groups`` otherwise. Forbidden,
        not invalid: the request is well formed, this caller may not make it; and the caller knows its own
        groups, so the answer tells it nothing about anyone else's documents."""
        for i, d in enumerate(req.documents):
            outside = sorted(set(d.groups or ()) - principal.groups) if principal.groups is not None else []
            if outside:
                raise ApiError(
                    403,
                    "forbidden",
                    f"documents.{i}.groups: {outside[0]!r} is not one of your groups",
                    f"documents.{i}.groups",
                )
        if self._writes.locked():
            raise ApiError(
                429,
                "too_many_requests",
                f"{self.cfg.router.document_writes} document write(s) already running here; retry shortly",
                None,
                DOCUMENT_WRITE_RETRY_AFTER_S,
            )
        async with self._writes:
            docs = [TextDocument(d.source, d.text, d.title, tuple(d.groups or ())) for d in req.documents]
            report: IngestReport = await asyncio.to_thread(self.ingestor.ingest_texts, docs, principal.access)
        log.info(
            "documents written by %s (tenant %s): %s",
            principal.name,
            principal.tenant,
            json.dumps({"sources": [d.source for d in docs][:20], **report.as_dict()}),
        )
        return report.as_dict()

    async def delete_document(self, source: str, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        where = Filter.of_sources([source])
        access = principal.access
        # The latest writes (Strong): under Bounded, a document posted a moment ago would look absent (404).
        # Another tenant's document, or one of groups the caller is not in, is absent to it: the same 404.
        count = await asyncio.to_thread(partial(self.store.count, where, access=access, latest=True))
        if count == 0:
            raise ApiError(404, "not_found", f"no chunks stored for source {source!r}", "source")
        await asyncio.to_thread(partial(self.store.delete, where, access=access))
        log.info(
            "document %r deleted by %s (tenant %s): %d chunks",
            source,
            principal.name,
            principal.tenant,
            count,
        )
        return {"source": source, "deleted_chunks": count}

    async def stats(self, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        """The collection as the caller sees it: its tenant's chunks and documents (of its groups)."""
        return await asyncio.to_thread(partial(self.store.stats, access=principal.access))

    # ---- readiness ------------------------------------------------------------------------------------
    async def readiness(self, timeout_s: float = 5.0) -> tuple[bool, dict[str, str]]:
        async def milvus() -> None:
            await asyncio.to_thread(self.store.has_collection)

        probes = {"milvus": milvus, **self.checks}
        results: dict[str, str] = {}
        for name, probe in probes.items():
            try:
                await asyncio.wait_for(probe(), timeout_s)
                results[name] = "ok"
            except Exception as err:  # a readiness probe reports every failure, whatever its type
                results[name] = f"unavailable: {type(err).__name__}: {err}"[:300]
        return all(v == "ok" for v in results.values()), results
