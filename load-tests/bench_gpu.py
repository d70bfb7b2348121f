"""GPU variant of bench.py: CUDA vLLM (tensor_parallel_size 1) serving a small Llama generated locally, the
encoder on the GPU too; the same four side-by-side measurements. Exits 0 with "skipped" without CUDA.

The model is the generator's tiny Llama recipe (random weights, locally trained tokenizer, Llama 3 chat
template; see services/ragserve/generator/tiny_model.py) at larger dimensions (GPU_SPEC, ~90M parameters),
so the GPU does measurable work per token; nothing is downloaded. Needs the CUDA build of vLLM
(`RAGSERVE_EXTRA=gpu scripts/install.sh`); CI never runs it.

    .venv/bin/python load-tests/bench_gpu.py [bench.py options]     # writes results/bench-gpu.json

Settings already in the environment win over GPU_SETTINGS (tests/gpu uses that to keep its run short).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

# vLLM's attention wants head_dim in 32..256 (multiple of 16): 1024 / 16 heads = 64.
GPU_SPEC = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
}
# Config flows through the environment to every phase (in-process, the served app's replicas, the raw
# vLLM server's command line, which bench.py derives from the same GeneratorConfig).
GPU_SETTINGS = {
    "RAGSERVE__GENERATOR__DEVICE": "cuda",
    "RAGSERVE__GENERATOR__DTYPE": "bfloat16",
    "RAGSERVE__GENERATOR__TENSOR_PARALLEL_SIZE": "1",
    "RAGSERVE__GENERATOR__ENFORCE_EAGER": "false",  # CUDA graphs, as in production
    "RAGSERVE__GENERATOR__MAX_NUM_SEQS": "64",
    "RAGSERVE__GENERATOR__MAX_NUM_BATCHED_TOKENS": "8192",
    # The in-process engine, the served one and the raw server run one after another, never together.
    "RAGSERVE__GENERATOR__GPU_MEMORY_UTILIZATION": "0.4",
    "RAGSERVE__EMBEDDER__DEVICE": "cuda",
}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def gpu_model(cache_dir: Path) -> Path:
    """The generator's tiny-Llama recipe at GPU_SPEC dimensions, generated once under ``cache_dir``."""
    from ragserve.generator import tiny_model

    with mock.patch.dict(tiny_model.TINY_SPEC, GPU_SPEC):
        return tiny_model.ensure_tiny_llama(cache_dir / "gpu-llama")


def main() -> int:
    if not cuda_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    from ragserve.config import load_config

    model = gpu_model(load_config().cache_dir)
    for key, value in {
        **GPU_SETTINGS,
        "RAGSERVE__GENERATOR__MODEL": str(model),
        "RAGSERVE__GENERATOR__SERVED_MODEL_NAME": "gpu-llama",
    }.items():
        os.environ.setdefault(key, value)
    import bench

    if "--out" not in sys.argv:
        sys.argv += ["--out", str(bench.RESULTS / "bench-gpu.json")]
    bench.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
