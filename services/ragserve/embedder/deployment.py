"""Embedder pool: a Serve deployment around the Encoder with dynamic batching of queries, and the adapter
its callers use through a handle (``RemoteEmbedder``).

Plain class: ``app.build_app`` wraps it with ``serve.deployment(**options)``; tests can construct it directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
from ray import serve

from ragserve.config import EmbedderConfig
from ragserve.embedder.encoder import Encoder
from ragserve.observability import metrics


class EmbedderDeployment:
    def __init__(self, cfg: EmbedderConfig):
        self.encoder = Encoder(cfg)
        self.embed_query.set_max_batch_size(cfg.max_batch_size)  # type: ignore[attr-defined]
        self.embed_query.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)  # type: ignore[attr-defined]

    def info(self) -> dict[str, object]:
        return {"model": self.encoder.model_name, "dim": self.encoder.dim}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed_query(self, texts: list[str]) -> list[np.ndarray]:
        """Called once per query; Serve groups concurrent calls into one forward pass."""
        metrics.EMBEDDER_BATCH_SIZE.observe(len(texts))
        vectors = await asyncio.to_thread(self.encoder.embed_queries, texts)
        return list(vectors)

    async def embed_documents(self, texts: list[str]) -> np.ndarray:
        """A whole ingestion batch in one call (already batched by the caller)."""
        return await asyncio.to_thread(self.encoder.embed_documents, texts)

    async def check_health(self) -> None:
        await self.embed_query("health check")


class RemoteEmbedder:
    """The embedder pool behind a handle: async batched queries for requests, sync batches for ingestion
    (the DocumentEncoder interface ``Ingestor`` takes)."""

    def __init__(self, handle: Any, model_name: str, dim: int):
        self.handle = handle
        self.model_name = model_name
        self.dim = dim

    @classmethod
    async def connect(cls, handle: Any) -> RemoteEmbedder:
        info = await handle.info.remote()
        return cls(handle, str(info["model"]), int(info["dim"]))

    async def embed_queries(self, texts: list[str]) -> np.ndarray:
        vectors = await asyncio.gather(*(self._embed_one(t) for t in texts))
        return np.stack(vectors).astype(np.float32, copy=False)

    async def _embed_one(self, text: str, attempts: int = 4) -> np.ndarray:
        """Embedding is idempotent: a call lost with a dying replica is retried on another one."""
        from ray.exceptions import RayActorError

        for attempt in range(attempts):
            try:
                return await self.handle.embed_query.remote(text)
            except RayActorError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        # Called from a worker thread (ingestion runs off the event loop), where blocking is fine.
        return np.asarray(self.handle.embed_documents.remote(list(texts)).result(), dtype=np.float32)
