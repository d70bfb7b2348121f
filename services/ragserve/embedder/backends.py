"""Encoder backends: PyTorch (sentence-transformers) or an ONNX export of the same model run by ONNX Runtime
(fp32 or int8 dynamically quantized) or by OpenVINO.

Why the runtimes' own APIs and not ``SentenceTransformer(path, backend="onnx")``: sentence-transformers'
backends need ``optimum[onnxruntime]`` / ``optimum-intel[openvino]``, and neither installs beside our pins
(optimum-onnx downgrades transformers to 4.57 and huggingface_hub to 0.36; optimum-intel pulls a CUDA torch
2.14). ``onnxruntime`` and ``openvino`` alone install with nothing else changed, so ragserve exports the
model itself (``torch.onnx.export`` of the transformer plus its pooling), once, into the data directory
(``generated.ensure_generated``: atomic, safe under concurrent replicas), and runs it with the tokenizer
sentence-transformers would use (its fast tokenizer, saved next to the model).

The export needs torch and sentence-transformers; running it needs only onnxruntime or openvino, the
``tokenizers`` library and numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragserve.generated import ensure_generated

Backend = Literal["torch", "onnx", "onnx-int8", "openvino"]
EXPORT_VERSION = 1  # bump when the export's layout or graph changes: a new directory is written
MARKER = "export.json"  # written last: a directory with it is complete

Forward = Callable[[dict[str, np.ndarray]], np.ndarray]


def export_key(model: str, path: str) -> str:
    """A directory name for ``model``'s export: its name plus a digest of what was exported (the files'
    names, sizes and modification times), so a changed model gets a new export rather than a stale one."""
    files: list[tuple[str, int, int]] = []
    root = Path(path)
    if root.is_dir():
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                st = f.stat()
                files.append((str(f.relative_to(root)), st.st_size, st.st_mtime_ns))
    digest = hashlib.sha256(json.dumps([EXPORT_VERSION, model, path, files]).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in model).strip("-")[:60]
    return f"{slug}-{digest}"


def _write_onnx(model_path: str, out: Path) -> None:
    """Export the transformer and its pooling (mean or CLS; normalization stays outside the graph) to
    ``out/model.onnx`` with dynamic batch and sequence axes, and the tokenizer to ``out/tokenizer.json``."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path, device="cpu")
    transformer, pooling, *rest = list[Any](st)  # modules: Transformer, Pooling, Normalize (untyped here)
    mode = getattr(pooling, "pooling_mode", None)
    if mode not in ("mean", "cls"):
        raise ValueError(f"the ONNX export supports mean or cls pooling, not {mode!r}: use backend 'torch'")
    tokenizer = transformer.tokenizer
    names = _input_names(tokenizer, model_path)

    class Pooled(torch.nn.Module):
        def __init__(self, auto_model: torch.nn.Module):
            super().__init__()
            self.auto_model = auto_model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            feeds = dict(zip(names, inputs, strict=True))
            hidden = self.auto_model(**feeds).last_hidden_state
            if mode == "cls":
                return hidden[:, 0]
            mask = feeds["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    sample = tokenizer(["an example", "a longer example, to pad"], padding=True, return_tensors="pt")
    _export(
        Pooled(transformer.auto_model),
        tokenizer,
        names,
        sample,
        "embedding",
        model_path,
        out,
        {
            "pooling": mode,
            "normalize": any(type(m).__name__ == "Normalize" for m in rest),
            "max_seq_length": int(st.max_seq_length or 512),
            "dim": int(st.get_embedding_dimension() or 0),
        },
    )


def _write_cross_encoder_onnx(model_path: str, max_length: int, out: Path) -> None:
    """Export a sentence-transformers CrossEncoder with one output (a relevance score per pair): the
    sequence-classification model and its activation (Sigmoid by default), to ``out/model.onnx``."""
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(model_path, device="cpu", max_length=max_length)
    if ce.num_labels != 1:
        raise ValueError(f"the ONNX export supports one-score cross-encoders, not {ce.num_labels} labels")
    tokenizer = ce.tokenizer
    names = _input_names(tokenizer, model_path)
    activation = ce.activation_fn if isinstance(ce.activation_fn, torch.nn.Module) else torch.nn.Identity()

    class Scored(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.model = model
            self.activation = activation

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.activation(self.model(**dict(zip(names, inputs, strict=True))).logits)

    sample = tokenizer(
        [["a question", "a passage"], ["q", "a longer passage, to pad"]], padding=True, return_tensors="pt"
    )
    _export(
        Scored(ce.model),
        tokenizer,
        names,
        sample,
        "score",
        model_path,
        out,
        {
            "activation": type(activation).__name__,
            "max_seq_length": max_length,
            "dim": 1,
            "normalize": False,
        },
    )


def _input_names(tokenizer: Any, model_path: str) -> list[str]:
    """The model inputs the export takes, in order; the runtime side tokenizes with the fast tokenizer."""
    if tokenizer is None or not tokenizer.is_fast:
        raise ValueError(f"{model_path}: the ONNX backends need a fast (Rust) tokenizer: use backend 'torch'")
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


def _export(
    module: Any,
    tokenizer: Any,
    names: list[str],
    sample: Any,
    output: str,
    model_path: str,
    out: Path,
    meta: dict[str, Any],
) -> None:
    """``module`` to ``out/model.onnx`` (batch and sequence dynamic), its tokenizer, and MARKER with
    ``meta`` and what every export records."""
    import torch

    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            tuple(sample[n] for n in names),
            str(out / "model.onnx"),
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript, not installed
            input_names=names,
            output_names=[output],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, output: {0: "batch"}},
            opset_version=17,
        )
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    meta = {
        "version": EXPORT_VERSION,
        "model": model_path,
        "inputs": names,
        **meta,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "pad_token": str(tokenizer.pad_token or "[PAD]"),
    }
    (out / MARKER).write_text(json.dumps(meta, indent=2))


def _write_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantization of the fp32 export's MatMul weights (activations quantized per call)."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32 / "model.onnx",
        out / "model.onnx",
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )
    shutil.copy(fp32 / "tokenizer.json", out / "tokenizer.json")
    meta = json.loads((fp32 / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**meta, "quantized": "int8-dynamic"}, indent=2))


def ensure_export(
    model: str,
    model_path: str,
    backend: Backend,
    cache_dir: Path,
    cross_encoder_max_length: int | None = None,
) -> Path:
    """The directory holding ``backend``'s model for ``model``: ``<cache_dir>/encoders/<key>/onnx`` (fp32,
    read by ONNX Runtime and OpenVINO) or ``.../onnx-int8``, written on first use, once. With
    ``cross_encoder_max_length``: the cross-encoder's, under ``<cache_dir>/rerankers/``."""
    if cross_encoder_max_length is None:
        root = Path(cache_dir).expanduser() / "encoders" / export_key(model, model_path)
        fp32 = ensure_generated(root / "onnx", MARKER, lambda tmp: _write_onnx(model_path, tmp))
    else:
        n = cross_encoder_max_length
        root = Path(cache_dir).expanduser() / "rerankers" / export_key(model, model_path)
        fp32 = ensure_generated(
            root / "onnx", MARKER, lambda tmp: _write_cross_encoder_onnx(model_path, n, tmp)
        )
    if backend == "onnx-int8":
        return ensure_generated(root / "onnx-int8", MARKER, lambda tmp: _write_int8(fp32, tmp))
    return fp32


def cpu_threads() -> int:
    """Threads for one forward pass: Ray's OMP_NUM_THREADS in an actor or replica (what torch follows),
    else 0 (the runtime's default: one per physical core)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def onnxruntime_forward(model_file: Path) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def openvino_forward(model_file: Path) -> Forward:
    import openvino as ov

    # f32 explicitly: on CPUs with AMX / AVX512-BF16 OpenVINO otherwise runs bf16 (vectors drift ~1e-3).
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if cpu_threads():
        config["INFERENCE_NUM_THREADS"] = cpu_threads()
    compiled = ov.Core().compile_model(str(model_file), "CPU", config)
    request = compiled.create_infer_request()  # one per encoder: calls on one encoder are serialized
    return lambda feeds: np.asarray(request.infer(feeds)[0])


class ExportedModel:
    """An exported encoder run by ONNX Runtime or OpenVINO: tokenizes like sentence-transformers (its fast
    tokenizer, truncated at max_seq_length, padded per batch), batches texts sorted by length as
    ``SentenceTransformer.encode`` does (less padding), and returns the pooled vectors in input order."""

    def __init__(self, directory: Path, backend: Backend, max_seq_length: int | None = None):
        from tokenizers import Tokenizer

        self.meta = json.loads((directory / MARKER).read_text())
        self.dim = int(self.meta["dim"])
        self.normalize = bool(self.meta["normalize"])  # the model's own Normalize module
        self.max_seq_length = int(max_seq_length or self.meta["max_seq_length"])
        self.inputs: list[str] = list(self.meta["inputs"])
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=self.meta["pad_id"], pad_token=self.meta["pad_token"])
        model_file = directory / "model.onnx"
        runtime = openvino_forward if backend == "openvino" else onnxruntime_forward
        self._forward = runtime(model_file)

    def feeds(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        encoded = self.tokenizer.encode_batch(list(texts))
        arrays = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        return {n: arrays[n] for n in self.inputs}

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._forward(self.feeds([texts[i] for i in rows]))
        return out


class ExportedCrossEncoder(ExportedModel):
    """An exported cross-encoder: (question, passage) pairs tokenized as one sequence pair (longest-first
    truncation at max_length, as the transformers tokenizer does), one score per pair."""

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> np.ndarray:
        order = np.argsort([-(len(q) + len(p)) for q, p in pairs], kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(pairs), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._forward(self.feeds([pairs[i] for i in rows])).reshape(-1)
        return out


def normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
