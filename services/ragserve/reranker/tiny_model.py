"""A tiny BERT cross-encoder with random weights, for CPU runs of the reranker's code path (tests, laptops).

Nothing is downloaded: the tokenizer is the bundled all-MiniLM-L6-v2's WordPiece tokenizer (a BERT
vocabulary), the weights are random. Its scores order chunks arbitrarily: it proves plumbing, not quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragserve.generated import ensure_generated

TINY_SPEC: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
    "initializer_range": 0.5,  # wide random weights spread the scores (the default 0.02 makes near-ties)
}
MARKER = "ragserve-tiny-cross-encoder.json"


def ensure_tiny_cross_encoder(cache_dir: Path) -> Path:
    """Return the model directory, generating it once (atomically, safe under concurrent callers)."""
    return ensure_generated(Path(cache_dir) / "tiny-cross-encoder", MARKER, _write_model)


def _write_model(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ragserve.config import BUNDLED_MINILM
    from ragserve.embedder.encoder import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_MINILM))
    tokenizer.save_pretrained(out)
    config = BertConfig(**TINY_SPEC, vocab_size=tokenizer.vocab_size)
    config.num_labels = 1  # one relevance logit per pair
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    (out / MARKER).write_text(json.dumps({"spec": TINY_SPEC, "generator": "ragserve"}), encoding="utf-8")
