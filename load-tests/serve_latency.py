"""Latency of /v1/search and /v1/query through Ray Serve next to the same steps called in-process.

One run, same machine, same Milvus Lite data, same models and engine args:
  1. in-process: Encoder + MilvusStore + VLLMGenerator + RagPipeline (no HTTP, no Ray);
  2. served: `build_app` on a local Ray, requests over HTTP to 127.0.0.1.
Each side runs N requests at concurrency C and reports p50 / p99 latency and throughput.

    .venv/bin/python load-tests/serve_latency.py [--requests 200] [--concurrency 8] [--corpus DIR]

The corpus is ingested into a private RAGSERVE_HOME first (default: the shared Milvus docs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from harness import CORPUS as DEFAULT_CORPUS
from harness import EVAL, ingest_private, served_app

PORT = 8777


def questions() -> list[str]:
    if EVAL.exists():
        return [json.loads(line)["question"] for line in EVAL.read_text().splitlines() if line.strip()]
    return ["What do the parameters for HNSW mean?"]


async def measure(call: Callable[[str], Awaitable[None]], n: int, concurrency: int) -> dict[str, float]:
    qs = questions()
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        async with sem:
            t0 = time.perf_counter()
            try:
                await call(qs[i % len(qs)])
                latencies.append(time.perf_counter() - t0)
            except Exception as err:  # counted, reported; the run goes on
                errors += 1
                if errors <= 3:
                    print(f"  error: {err!r}"[:300], file=sys.stderr)

    await one(0)  # warm-up, not counted
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "n": len(latencies),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else float("nan"),
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else float("nan"),
        "rps": round(len(latencies) / wall, 2),
    }


async def in_process(home: Path, n: int, c: int) -> dict[str, dict[str, float]]:
    from ragserve import environment
    from ragserve.config import load_config
    from ragserve.embedder.encoder import Encoder
    from ragserve.generator.engine import VLLMGenerator
    from ragserve.rag import RagRequest, build_pipeline
    from ragserve.retrieval import local_query_embedder
    from ragserve.store.lite_server import LiteServer
    from ragserve.store.milvus import MilvusStore

    # vLLM's CPU platform writes LD_PRELOAD (tcmalloc, torch's libgomp) and more into os.environ; processes
    # started later (the served phase's Ray workers) would inherit them, and with torch's libgomp preloaded
    # a Ray worker's torch ignores the OMP_NUM_THREADS Ray sets. Restore the environment we started with.
    saved_env = dict(os.environ)
    cfg = load_config(env={**os.environ, "RAGSERVE_HOME": str(home)})
    environment.apply(cfg)
    lite = LiteServer(str(cfg.store.uri))  # same gRPC path the served app uses
    store = MilvusStore(cfg.store.model_copy(update={"uri": lite.uri}))
    store.load()
    encoder = Encoder(cfg.embedder.for_queries())
    generator = VLLMGenerator(cfg.generator, cfg.cache_dir)
    generator.start()
    try:
        pipeline = build_pipeline(
            cfg, local_query_embedder(encoder), store, generator, generator.get_tokenizer()
        )
        retriever = pipeline.retriever

        async def search(q: str) -> None:
            await retriever.search(q, 3)

        async def query(q: str) -> None:
            await pipeline.answer(RagRequest(q, cfg.generator.sampling, top_k=3))

        return {"search": await measure(search, n, c), "query": await measure(query, n, c)}
    finally:
        generator.shutdown()
        store.close()
        lite.stop()
        os.environ.clear()
        os.environ.update(saved_env)


async def served(home: Path, n: int, c: int) -> dict[str, dict[str, float]]:
    import httpx

    with served_app({"data_dir": str(home)}, PORT) as base:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:

            async def search(q: str) -> None:
                (await client.post("/v1/search", json={"query": q, "top_k": 3})).raise_for_status()

            async def query(q: str) -> None:
                (await client.post("/v1/query", json={"question": q, "top_k": 3})).raise_for_status()

            return {"search": await measure(search, n, c), "query": await measure(query, n, c)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from ragserve.observability.logging import configure_logging

    configure_logging(False)
    home = ingest_private(args.corpus)

    local = asyncio.run(in_process(home, args.requests, args.concurrency))
    remote = asyncio.run(served(home, args.requests, args.concurrency))
    print(f"\n{args.requests} requests per row, concurrency {args.concurrency}, {os.cpu_count()} CPUs")
    print(f"{'':8} {'path':10} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>8} {'errors':>7}")
    for route in ("search", "query"):
        for name, r in (("in-proc", local[route]), ("served", remote[route])):
            print(f"{route:8} {name:10} {r['p50_ms']:>9} {r['p99_ms']:>9} {r['rps']:>8} {r['errors']:>7}")
        p50 = remote[route]["p50_ms"] / local[route]["p50_ms"]
        p99 = remote[route]["p99_ms"] / local[route]["p99_ms"]
        print(f"{route:8} {'served/in':10} {p50:>8.2f}x {p99:>8.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"in_process": local, "served": remote}, indent=2))


if __name__ == "__main__":
    main()
