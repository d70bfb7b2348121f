"""The GPU bench on CUDA (CUDA vLLM, a generated ~90M Llama, tensor_parallel_size 1); skipped elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU (and the CUDA build of vLLM)"),
]


def test_gpu_bench_measures_all_four_ratios(tmp_path: Path, corpus_dir: Path) -> None:
    out = tmp_path / "bench-gpu.json"
    cmd = [sys.executable, "bench_gpu.py", "--corpus", str(corpus_dir / "about"), "--requests", "10"]
    cmd += ["--texts", "64", "--out", str(out)]
    env = {**os.environ, "RAGSERVE_HOME": str(tmp_path / "home")}  # the generated GPU model goes here
    subprocess.run(cmd, cwd=REPO / "load-tests", env=env, check=True, timeout=1500)
    report = json.loads(out.read_text())
    embedder = report["a_embedder"]
    assert embedder["pool_texts_per_s"] > 0 and embedder["raw_best_texts_per_s"] > 0
    expected = embedder["pool_texts_per_s"] / embedder["raw_best_texts_per_s"]
    assert embedder["ratio_pool_over_raw"] == pytest.approx(expected, abs=0.001)  # the figure is its ratio
    assert report["b_search"]["served"]["errors"] == 0
    assert report["c_query"]["served"]["errors"] == 0 and report["c_query"]["raw_vllm_server"]["errors"] == 0
    assert report["d_ingestion"]["chunks"] > 0
