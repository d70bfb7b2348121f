"""The generator's own code path (VLLMGenerator) on CUDA, in-process, for a few tokens: on a new machine a
missing kernel library shows here in a minute, with its traceback, instead of as a failed Serve deployment.

    cd <repo> && python3 load-tests/device/smoke.py      # prints SMOKE OK
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # load-tests/
from bench_gpu import apply_gpu_settings


async def stream(generator: Any, sampling: Any) -> None:
    """One request through ``submit``, as the pipeline sends it; prints each delta."""
    async for delta in await generator.submit([1, 5, 9, 33, 70], sampling):
        print("delta", repr(delta.text), delta.completion_tokens, delta.engine_ttft_s, flush=True)


def main() -> None:
    apply_gpu_settings()
    from ragserve import environment
    from ragserve.config import load_config
    from ragserve.generator.engine import VLLMGenerator

    cfg = load_config()
    environment.apply(cfg)
    started = time.perf_counter()
    generator = VLLMGenerator(cfg.generator, cfg.cache_dir)
    generator.start()
    print(f"engine up in {time.perf_counter() - started:.1f} s", flush=True)
    try:
        asyncio.run(stream(generator, cfg.generator.sampling))
    finally:
        generator.shutdown()
    print("SMOKE OK")


if __name__ == "__main__":
    main()
