"""Decode tokens/s and TTFT of the local profile's generator in one dtype (how generator.dtype was chosen).

    .venv/bin/python load-tests/generator_dtype.py bfloat16
    .venv/bin/python load-tests/generator_dtype.py float32

One in-process vLLM engine (the profile's settings, greedy, no repetition penalty), a RAG-sized prompt (~820
tokens: the README as context), 128 tokens, four runs of which the first (warm-up) is dropped; each run's
system line differs so no prefix-cache hit shortens its TTFT. Prints one JSON line. Run the dtypes back to
back: on a shared machine only a paired comparison means anything.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(dtype: str) -> dict:
    from ragserve import environment
    from ragserve.config import load_config

    base = load_config()
    environment.apply(base)
    from ragserve.generator.engine import VLLMGenerator

    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 128, "repetition_penalty": 1.0}
    cfg = load_config(overrides={"generator": {"dtype": dtype, "sampling": sampling}}).generator
    generator = VLLMGenerator(cfg, base.cache_dir)
    started = time.perf_counter()
    generator.start()
    start_s = time.perf_counter() - started
    tokenizer = generator.get_tokenizer()
    context = (REPO / "README.md").read_text(encoding="utf-8")[:2400]
    question = {"role": "user", "content": f"{context}\n\nQuestion: How do I ingest documents?"}

    async def one(run: int) -> tuple[float, int, float]:
        system = {"role": "system", "content": f"Run {run} at {time.time()}. Answer from the context."}
        text = tokenizer.apply_chat_template([system, question], add_generation_prompt=True, tokenize=False)
        ids = tokenizer.encode(text, add_special_tokens=False)
        t0, ttft, tokens = time.perf_counter(), 0.0, 0
        async for delta in generator.generate(ids, cfg.sampling):
            if not ttft and delta.completion_tokens:
                ttft = time.perf_counter() - t0
            tokens = delta.completion_tokens
        return ttft, tokens, time.perf_counter() - t0

    async def runs() -> list[tuple[float, int, float]]:
        return [await one(i) for i in range(4)]

    rows = asyncio.run(runs())[1:]
    generator.shutdown()
    ttfts = sorted(r[0] for r in rows)
    decode = sorted((n - 1) / (total - ttft) for ttft, n, total in rows)
    return {
        "dtype": dtype,
        "model": cfg.model,
        "engine_start_s": round(start_s, 1),
        "ttft_s_p50": round(ttfts[1], 3),
        "decode_tok_s_p50": round(decode[1], 1),
        "runs": [[round(x, 3) for x in r] for r in rows],
    }


if __name__ == "__main__":  # vLLM's engine process is spawned: the guard is required
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "bfloat16")))
