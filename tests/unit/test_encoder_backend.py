"""embedder.backend / reranker.backend: the default and checks, and the export written once (a counting fake
writer: the real export, torch and the runtimes are in tests/integration/test_encoder_backend.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ragserve.config import ConfigError, load_config
from ragserve.embedder import backends


def test_default_is_torch_and_the_export_goes_to_the_data_dir(tmp_path: Path) -> None:
    """torch stays the default: ONNX Runtime fp32 is faster for one query but slower at ingestion batch
    sizes on this CPU (load-tests/RESULTS.md, "Encoder backends")."""
    cfg = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    assert cfg.embedder.backend == "torch" and cfg.reranker.backend == "torch"
    assert cfg.embedder.export_dir == tmp_path / "models"  # the data directory, like generated models


def test_explicit_backend_and_export_dir_are_kept(tmp_path: Path) -> None:
    env = {
        "RAGSERVE_HOME": str(tmp_path),
        "RAGSERVE__EMBEDDER__BACKEND": "onnx-int8",
        "RAGSERVE__EMBEDDER__EXPORT_DIR": str(tmp_path / "exports"),
    }
    cfg = load_config(env=env)
    assert cfg.embedder.backend == "onnx-int8" and cfg.embedder.export_dir == tmp_path / "exports"


def test_a_cpu_backend_on_a_gpu_device_is_refused_by_name(tmp_path: Path) -> None:
    env = {
        "RAGSERVE_HOME": str(tmp_path),
        "RAGSERVE__EMBEDDER__BACKEND": "openvino",
        "RAGSERVE__EMBEDDER__DEVICE": "cuda",
    }
    with pytest.raises(ConfigError, match=r"'openvino'.*'cuda'"):
        load_config(env=env)


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    env = {"RAGSERVE_HOME": str(tmp_path), "RAGSERVE__EMBEDDER__BACKEND": "tensorrt"}
    with pytest.raises(ConfigError, match="backend"):
        load_config(env=env)


def _fake_model(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"w" * 10)
    return root


def test_export_key_changes_with_the_model_files(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "m")
    key = backends.export_key("my/model", str(model))
    assert key.startswith("my-model-") and key == backends.export_key("my/model", str(model))
    (model / "model.safetensors").write_bytes(b"w" * 11)
    assert backends.export_key("my/model", str(model)) != key


def test_the_export_is_written_once_even_by_concurrent_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake_model(tmp_path / "m")
    calls: list[Path] = []
    gate = threading.Barrier(4)

    def fake_write(model_path: str, out: Path) -> None:
        calls.append(out)
        (out / "model.onnx").write_bytes(b"onnx")
        (out / "tokenizer.json").write_text("{}")
        (out / backends.MARKER).write_text(json.dumps({"dim": 3}))

    monkeypatch.setattr(backends, "_write_onnx", fake_write)
    results: list[Path] = []

    def call() -> None:
        gate.wait()
        results.append(backends.ensure_export("m", str(model), "onnx", tmp_path / "cache"))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [target] = set(results)
    assert (target / backends.MARKER).exists() and target.name == "onnx"
    # Racing callers may each write a private copy, but one is renamed into place and no partial is left.
    assert sorted(p.name for p in target.parent.iterdir()) == ["onnx"]
    written = len(calls)
    assert backends.ensure_export("m", str(model), "onnx", tmp_path / "cache") == target
    assert len(calls) == written  # present: not written again


def test_a_partial_export_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_model(tmp_path / "m")
    target = tmp_path / "cache" / "encoders" / backends.export_key("m", str(model)) / "onnx"
    target.mkdir(parents=True)
    (target / "model.onnx").write_bytes(b"half")  # a crash before the marker

    def fake_write(model_path: str, out: Path) -> None:
        (out / "model.onnx").write_bytes(b"whole")
        (out / backends.MARKER).write_text("{}")

    monkeypatch.setattr(backends, "_write_onnx", fake_write)
    assert backends.ensure_export("m", str(model), "onnx", tmp_path / "cache") == target
    assert (target / "model.onnx").read_bytes() == b"whole"


def test_threads_follow_rays_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert backends.cpu_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert backends.cpu_threads() == 0
