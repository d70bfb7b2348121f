"""Embedder pool: a Serve deployment around the Encoder with dynamic batching of queries (``Batcher``), and
the adapter its callers use through a handle (``RemoteEmbedder``).

Plain class: ``app.build_app`` wraps it with ``serve.deployment(**options)``; tests can construct it directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragserve.batching import Batcher, settle
from ragserve.config import EmbedderConfig
from ragserve.embedder.encoder import Encoder
from ragserve.handles import result_from_thread
from ragserve.observability import metrics


class EmbedderDeployment:
    """Questions through ``embedder.query_backend`` (``cfg.for_queries()``), documents through ``backend``;
    one Encoder when they are the same, else the documents' one loads at its first use (POST /v1/documents
    only: ingestion runs its own encoders)."""

    def __init__(self, cfg: EmbedderConfig):
        self.cfg = cfg
        questions = cfg.for_queries()
        self.encoder = Encoder(questions)
        self._documents: Encoder | None = self.encoder if questions is cfg else None
        self._documents_loading = threading.Lock()  # two first POSTs at once load one model
        self._queries = Batcher(self._encode_calls, cfg.max_batch_size, cfg.batch_wait_timeout_s)

    def info(self) -> dict[str, object]:
        return {"model": self.encoder.model_name, "dim": self.encoder.dim}

    async def embed_queries(self, texts: list[str]) -> np.ndarray:
        """The queries one router had pending at once (``RemoteEmbedder``); concurrent calls (several
        routers) are encoded together."""
        return await self._queries.submit(texts)

    async def _encode_calls(self, calls: list[list[str]]) -> list[np.ndarray]:
        texts = [t for call in calls for t in call]
        metrics.EMBEDDER_BATCH_SIZE.observe(len(texts))
        vectors = await asyncio.to_thread(self.encoder.embed_queries, texts)
        ends = np.cumsum([len(call) for call in calls])[:-1]
        return np.split(vectors, ends)

    async def embed_documents(self, texts: list[str]) -> np.ndarray:
        """A whole ingestion batch in one call (already batched by the caller)."""
        return await asyncio.to_thread(self._embed_documents, texts)

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        """On a worker thread, so the first call's model load does not block the replica's event loop."""
        with self._documents_loading:
            if self._documents is None:
                self._documents = Encoder(self.cfg)
        return self._documents.embed_documents(texts)

    async def check_health(self) -> None:
        await self.embed_queries(["health check"])


class RemoteEmbedder:
    """The embedder pool behind a handle: batched queries for requests, sync batches for ingestion (the
    DocumentEncoder interface ``Ingestor`` takes).

    Queries are coalesced before they cross the handle: the texts every request of this process submitted
    before the event loop next runs leave together, in calls of at most ``max_per_call`` texts (more than
    one call keeps several replicas busy). The first query never waits (its call leaves on the loop's next
    turn); under load one call carries the queries of many requests, so the per-call cost of Serve and Ray
    (which dominated one-text calls: load-tests/RESULTS.md, "Transport and query coalescing") is paid once
    for all of them.
    """

    def __init__(
        self,
        handle: Any,
        model_name: str,
        dim: int,
        max_per_call: int,
        documents_timeout_s: float | None = None,
    ):
        self.handle = handle
        self.documents_timeout_s = documents_timeout_s  # router.embed_documents_timeout_s
        self.model_name = model_name
        self.dim = dim
        self.max_per_call = max_per_call
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._calls: set[asyncio.Task[None]] = set()  # in flight (the loop keeps only weak references)
        self._loop = asyncio.get_running_loop()  # the replica's: embed_documents calls the handle there

    @classmethod
    async def connect(
        cls, handle: Any, max_per_call: int, documents_timeout_s: float | None = None
    ) -> RemoteEmbedder:
        info = await handle.info.remote()
        return cls(handle, str(info["model"]), int(info["dim"]), max_per_call, documents_timeout_s)

    async def embed_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        if not self._pending:
            loop.call_soon(self._send_pending)
        self._pending.extend(zip(texts, futures, strict=True))
        vectors = await asyncio.gather(*futures)
        return np.stack(vectors).astype(np.float32, copy=False)

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(pending), self.max_per_call):
            # Every waiter gets its vector or the call's failure; one that went away no longer waits.
            task = loop.create_task(settle(pending[start : start + self.max_per_call], self._embed))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _embed(self, texts: list[str], attempts: int = 4) -> np.ndarray:
        """Embedding is idempotent: a call lost with a dying replica is retried on another one."""
        from ray.exceptions import RayActorError

        for attempt in range(attempts):
            try:
                return await self.handle.embed_queries.remote(texts)
            except RayActorError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Called from a worker thread (ingestion runs off the event loop): the call runs on the loop."""
        vectors = result_from_thread(
            self._loop, lambda: self.handle.embed_documents.remote(list(texts)), self.documents_timeout_s
        )
        return np.asarray(vectors, dtype=np.float32)
