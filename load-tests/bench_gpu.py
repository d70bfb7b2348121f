"""GPU variant of bench.py and overhead.py: CUDA vLLM (tensor_parallel_size 1) serving a small Llama generated
locally, the encoder on the GPU too; the same side-by-side measurements. Exits 0 with "skipped" without CUDA.

The model is the generator's tiny Llama recipe (random weights, locally trained tokenizer, Llama 3 chat
template; see services/ragserve/generator/tiny_model.py) at larger dimensions (GPU_SPEC, ~90M parameters),
so the GPU does measurable work per token; nothing is downloaded. Needs the CUDA build of vLLM
(`RAGSERVE_EXTRA=gpu scripts/install.sh`); CI never runs it.

    .venv/bin/python load-tests/bench_gpu.py [bench.py options]              # -> results/bench-gpu.json
    .venv/bin/python load-tests/bench_gpu.py overhead [overhead.py options]  # -> results/overhead-gpu.json

Settings already in the environment win over GPU_SETTINGS (tests/gpu uses that to keep its run short).
"""

from __future__ import annotations

import importlib
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
    # bench.py runs its engines one after another; overhead.py runs the served engine and the raw server side
    # by side on one GPU, next to the encoders: two engines at 0.4 leave room for both.
    "RAGSERVE__GENERATOR__GPU_MEMORY_UTILIZATION": "0.4",
    "RAGSERVE__EMBEDDER__DEVICE": "cuda",
    # Forward passes of 64 texts, as production.yaml's. The local profile's 8 (right for CPU) capped the
    # pool on an H200 at raw encode's batch-8 rate (load-tests/RESULTS.md, "On one H200").
    "RAGSERVE__EMBEDDER__BATCH_SIZE": "64",
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


def apply_gpu_settings() -> None:
    """GPU_SETTINGS and the generated GPU model into this process's environment (settings already there
    win); every phase and process started afterwards reads its config from there."""
    from ragserve.config import load_config

    model = gpu_model(load_config().cache_dir)
    for key, value in {
        **GPU_SETTINGS,
        "RAGSERVE__GENERATOR__MODEL": str(model),
        "RAGSERVE__GENERATOR__SERVED_MODEL_NAME": "gpu-llama",
    }.items():
        os.environ.setdefault(key, value)


# The script run, and where its report goes unless --out is given.
SCRIPTS = {"bench": "bench-gpu.json", "overhead": "overhead-gpu.json"}


def main() -> int:
    script = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in SCRIPTS else "bench"
    if not cuda_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    apply_gpu_settings()
    module = importlib.import_module(script)
    if "--out" not in sys.argv:
        sys.argv += ["--out", str(module.RESULTS / SCRIPTS[script])]
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
