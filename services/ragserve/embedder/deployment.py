"""Embedder pool: a Serve deployment around the Encoder with dynamic batching of queries.

Plain class: ``app.build_app`` wraps it with ``serve.deployment(**options)``; tests can construct it directly.
"""

from __future__ import annotations

import asyncio

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
