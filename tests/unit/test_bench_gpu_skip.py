"""Without CUDA the GPU bench says so and exits 0 (CI never needs a GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: tests/gpu runs the bench")
def test_gpu_bench_skips_cleanly_without_cuda() -> None:
    res = subprocess.run(
        [sys.executable, "bench_gpu.py"], cwd=REPO / "load-tests", capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("skipped: no CUDA device")
