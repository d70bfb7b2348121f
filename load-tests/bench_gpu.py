"""GPU variant of bench.py: CUDA vLLM serving a small locally generated Llama with tensor_parallel_size 1,
the encoder on the GPU too; the same four side-by-side measurements. Exits 0 with "skipped" without CUDA.

Needs the CUDA build of vLLM (`RAGSERVE_EXTRA=gpu scripts/install.sh`); CI never runs it.

    .venv/bin/python load-tests/bench_gpu.py [bench.py options]     # writes results/bench-gpu.json
"""

from __future__ import annotations

import os
import sys

# Config flows through the environment to every phase (in-process and the served app's replicas).
GPU_SETTINGS = {
    "RAGSERVE__GENERATOR__DEVICE": "cuda",
    "RAGSERVE__GENERATOR__DTYPE": "bfloat16",
    "RAGSERVE__GENERATOR__TENSOR_PARALLEL_SIZE": "1",
    "RAGSERVE__GENERATOR__GPU_MEMORY_UTILIZATION": "0.4",  # the raw server and the app never overlap
    "RAGSERVE__EMBEDDER__DEVICE": "cuda",
}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def main() -> int:
    if not cuda_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    os.environ.update(GPU_SETTINGS)
    import bench

    if "--out" not in sys.argv:
        sys.argv += ["--out", str(bench.RESULTS / "bench-gpu.json")]
    bench.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
