"""embedder.backend on the real bundled MiniLM: the ONNX export written once into the data directory, and each
backend's vectors against sentence-transformers on torch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ragserve.config import load_config
from ragserve.embedder import backends
from ragserve.embedder.encoder import Encoder

TEXTS = [
    "How do I create a collection with a custom schema?",
    "Milvus supports FLAT, IVF_FLAT and HNSW indexes; AUTOINDEX picks one for you. " * 12,  # > 256 tokens
    "a",
    "What is the default consistency level?",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def encoder(home: Path, backend: str) -> Encoder:
    return Encoder(
        load_config(env={"RAGSERVE_HOME": str(home), "RAGSERVE__EMBEDDER__BACKEND": backend}).embedder
    )


@pytest.fixture(scope="module")
def torch_vectors(home: Path) -> np.ndarray:
    return encoder(home, "torch").embed_documents(TEXTS)


@pytest.mark.parametrize(
    ("backend", "max_abs"),
    [("onnx", 1e-5), ("openvino", 1e-4), ("onnx-int8", 0.05)],  # int8: the same model, quantized
)
def test_backend_vectors_match_torch(
    home: Path, torch_vectors: np.ndarray, backend: str, max_abs: float
) -> None:
    enc = encoder(home, backend)
    vectors = enc.embed_documents(TEXTS)
    assert vectors.shape == torch_vectors.shape == (len(TEXTS), enc.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - torch_vectors).max() < max_abs
    assert (vectors * torch_vectors).sum(1).min() > (0.98 if backend == "onnx-int8" else 0.9999)
    # The input order is kept (the backend sorts by length internally), and queries go the same way. (int8:
    # activations are quantized with one scale per batch, so a text's vector depends on its batch a little.)
    np.testing.assert_allclose(enc.embed_documents(TEXTS[::-1]), vectors[::-1], atol=1e-5)
    np.testing.assert_allclose(enc.embed_queries(TEXTS[:1]), torch_vectors[:1], atol=max_abs)
    assert enc.embed_documents([]).shape == (0, enc.dim)


def test_the_export_is_written_once_into_the_data_dir(
    home: Path, torch_vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder(home, "onnx")
    [export] = (home / "models" / "encoders").iterdir()
    assert export.name.startswith("bundled-all-MiniLM-L6-v2-")
    files = {p.name: p.stat().st_mtime_ns for p in (export / "onnx").iterdir()}
    assert {"model.onnx", "tokenizer.json", backends.MARKER} <= set(files)

    def no_second_export(*_: object) -> None:
        raise AssertionError("the export was written again")

    monkeypatch.setattr(backends, "_write_onnx", no_second_export)
    encoder(home, "onnx")  # a second replica / run: reads what is there
    encoder(home, "openvino")  # OpenVINO reads the same fp32 export
    assert {p.name: p.stat().st_mtime_ns for p in (export / "onnx").iterdir()} == files
    assert not [p for p in export.iterdir() if p.name.startswith(".")]  # no partial copies left


def test_max_seq_length_truncates_like_torch(home: Path) -> None:
    env = {"RAGSERVE_HOME": str(home), "RAGSERVE__EMBEDDER__MAX_SEQ_LENGTH": "16"}
    short_torch = Encoder(load_config(env={**env, "RAGSERVE__EMBEDDER__BACKEND": "torch"}).embedder)
    short_onnx = Encoder(load_config(env={**env, "RAGSERVE__EMBEDDER__BACKEND": "onnx"}).embedder)
    np.testing.assert_allclose(
        short_onnx.embed_documents(TEXTS), short_torch.embed_documents(TEXTS), atol=1e-5
    )


@pytest.mark.parametrize(("backend", "atol"), [("onnx", 1e-5), ("openvino", 1e-4), ("onnx-int8", None)])
def test_reranker_backend_scores_match_torch(home: Path, backend: str, atol: float | None) -> None:
    """reranker.backend shares the export and runtimes (the generated tiny cross-encoder: random weights,
    so only the plumbing is compared, through the scores themselves). int8 is only run: quantizing its
    wide random weights moves scores by up to 0.5, which says nothing about a trained model."""
    from ragserve.reranker.scorer import CrossEncoderScorer

    def scorer(b: str) -> CrossEncoderScorer:
        env = {"RAGSERVE_HOME": str(home), "RAGSERVE__RERANKER__BACKEND": b}
        cfg = load_config(env=env)
        return CrossEncoderScorer(cfg.reranker, cfg.cache_dir)

    passages = [*TEXTS[1:], "Milvus Lite stores everything in one local file."]
    expected = scorer("torch").score(TEXTS[0], passages)
    got = scorer(backend).score(TEXTS[0], passages)
    assert got.shape == expected.shape == (len(passages),) and got.dtype == np.float32
    assert np.isfinite(got).all() and ((got >= 0) & (got <= 1)).all()  # the export keeps the Sigmoid
    if atol is not None:
        np.testing.assert_allclose(got, expected, atol=atol)
    assert list(home.glob("models/rerankers/*/onnx/model.onnx"))


def test_the_embedder_runs_questions_on_query_backend_and_documents_on_backend(home: Path) -> None:
    """The local profile: questions through the fp32 export, documents through torch (loaded at first use),
    the same vectors either way."""
    from ragserve.embedder.deployment import EmbedderDeployment

    cfg = load_config(env={"RAGSERVE_HOME": str(home)}).embedder
    assert (cfg.backend, cfg.query_backend) == ("torch", "onnx")
    replica = EmbedderDeployment(cfg)
    assert replica.encoder.backend == "onnx" and replica._documents is None  # torch not loaded yet

    async def both() -> tuple[np.ndarray, np.ndarray]:
        return await replica.embed_queries(TEXTS[:2]), await replica.embed_documents(TEXTS[:2])

    questions, documents = asyncio.run(both())
    assert replica._documents is not None and replica._documents.backend == "torch"
    np.testing.assert_allclose(questions, documents, atol=1e-5)
    assert replica.info() == {"model": cfg.model, "dim": questions.shape[1]}
