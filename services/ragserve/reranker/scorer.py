"""CrossEncoderScorer: a sentence-transformers CrossEncoder scoring (question, passage) pairs, on torch or on
the encoder's ONNX backends (``reranker.backend``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragserve.config import TINY_CROSS_ENCODER, RerankerConfig
from ragserve.embedder.encoder import resolve_device


def resolve_reranker_model(model: str, cache_dir: Path) -> str:
    """Map the generated sentinel to its directory (generated on first use); names and paths pass through."""
    if model == TINY_CROSS_ENCODER:
        from ragserve.reranker.tiny_model import ensure_tiny_cross_encoder

        return str(ensure_tiny_cross_encoder(cache_dir))
    return model


class CrossEncoderScorer:
    """Loads the model once; ``score_pairs`` returns one float32 relevance score per pair (higher: more
    relevant; the model's own scale)."""

    def __init__(self, cfg: RerankerConfig, cache_dir: Path):
        self.model_name = cfg.model
        self.batch_size = cfg.batch_size
        self.backend = cfg.backend
        path = resolve_reranker_model(cfg.model, cache_dir)
        self._exported = None
        if self.backend == "torch":
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(path, device=resolve_device(cfg.device), max_length=cfg.max_length)
        else:  # the encoder's backends (embedder/backends.py): an ONNX export written once into cache_dir
            from ragserve.embedder.backends import ExportedCrossEncoder, ensure_export

            directory = ensure_export(cfg.model, path, self.backend, cache_dir, cfg.max_length)
            self._exported = ExportedCrossEncoder(directory, self.backend, cfg.max_length)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if self._exported is not None:
            return self._exported.score(list(pairs), self.batch_size)
        scores = self._model.predict(
            list(pairs), batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, p) for p in passages])
