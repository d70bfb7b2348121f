"""Reranker pool: a Serve deployment around the CrossEncoderScorer that scores the candidates of several
concurrent requests in one forward pass, and the adapter the router's pipeline calls (``RemoteReranker``).

Plain class: ``app.build_app`` wraps it with ``serve.deployment(**options)``; tests can construct it directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.batching import Batcher
from ragserve.config import RerankerConfig
from ragserve.observability import metrics
from ragserve.reranker.scorer import CrossEncoderScorer


class RerankerError(RuntimeError):
    """No scores: the reranker's replicas are down, shedding load, or slower than reranker.timeout_s."""


class RerankerDeployment:
    def __init__(self, cfg: RerankerConfig, cache_dir: str):
        self.scorer = CrossEncoderScorer(cfg, Path(cache_dir))
        self._requests = Batcher(self.score_batch, cfg.max_batch_size, cfg.batch_wait_timeout_s)

    async def score(self, request: tuple[str, list[str]]) -> np.ndarray:
        """Called once per request with (question, passages); concurrent requests are scored together."""
        return await self._requests.submit(request)

    async def score_batch(self, requests: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        """The pairs of every request in one pass through the model, split back per request."""
        pairs = [(query, passage) for query, passages in requests for passage in passages]
        metrics.RERANKER_BATCH_PAIRS.observe(len(pairs))
        scores = await asyncio.to_thread(self.scorer.score_pairs, pairs)
        out, start = [], 0
        for _, passages in requests:
            out.append(scores[start : start + len(passages)])
            start += len(passages)
        return out

    async def check_health(self) -> None:
        await self.score(("health check", ["ok"]))


class RemoteReranker:
    """The reranker pool behind a handle, as the pipeline's ``Rerank``: a bounded wait, and every failure
    (a dead or missing replica, a full queue, a timeout) as a RerankerError the API maps to 503."""

    def __init__(self, handle: Any, timeout_s: float):
        self.handle = handle
        self.timeout_s = timeout_s

    async def __call__(self, query: str, passages: Sequence[str]) -> np.ndarray:
        response = self.handle.score.remote((query, list(passages)))
        try:
            scores = await asyncio.wait_for(_result(response), self.timeout_s)
        except TimeoutError:
            response.cancel()
            raise RerankerError(f"no scores within reranker.timeout_s ({self.timeout_s:g} s)") from None
        except Exception as err:
            if type(err).__module__.startswith("ray"):
                raise RerankerError(f"{type(err).__name__}: {err}") from None
            raise
        return np.asarray(scores, dtype=np.float32)


async def _result(response: Any) -> Any:
    return await response
