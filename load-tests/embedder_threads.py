"""Where the embedder pool's gap to raw encode goes: torch threads in the replica vs per-call overhead.

Ray sets OMP_NUM_THREADS from an actor's num_cpus (1 for the local profile's 0.25), so the pool's replica
runs torch on one thread where a bare SentenceTransformer uses every core. One run, same texts, same model:
  raw encode at --batch on all torch threads and on one thread;
  the pool (Serve handle, --concurrency callers, dynamic batching) with the embedder at num_cpus 0.25
  (the local profile) and at num_cpus 2 (torch gets 2 threads), one replica each, --rounds rounds.

    .venv/bin/python load-tests/embedder_threads.py [--texts 512] [--rounds 3]     # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path

from bench import encode_sweep, one_thread_rate, pool_rates, raw_model, torch_threads_in_ray
from harness import CORPUS, RESULTS, ingest_private, machine, served_app
from serve_latency import questions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS / "about", help="any small corpus")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32, help="raw encode batch (bench.py's best)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "embedder_threads.json")
    args = parser.parse_args()
    from ragserve import environment
    from ragserve.config import load_config

    environment.apply(load_config())
    from ragserve.observability.logging import configure_logging

    configure_logging(False)
    qs = questions()
    texts = [f"{qs[i % len(qs)]} ({i})" for i in range(args.texts)]  # distinct, question-length

    model = raw_model(load_config())
    raw = encode_sweep(model, texts, [args.batch])[args.batch]
    raw_one = one_thread_rate(model, texts, args.batch)
    del model

    home = ingest_private(args.corpus)
    pool = {}
    try:
        for cpus in (0.25, 2.0):
            embedder = {
                "resources": {"num_cpus": cpus},
                "deployment": {"autoscaling_config": {"max_replicas": 1}},
            }
            with served_app({"data_dir": str(home), "embedder": embedder}, 8781):
                pool[cpus] = {
                    "torch_threads": torch_threads_in_ray(cpus),
                    "texts_per_s": asyncio.run(pool_rates(texts, args.concurrency, args.rounds)),
                }
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report = {
        "machine": machine(),
        "texts": args.texts,
        "raw_batch": args.batch,
        "raw_texts_per_s": raw,
        "raw_one_thread_texts_per_s": raw_one,
        "pool_concurrency": args.concurrency,
        "pool_by_embedder_num_cpus": pool,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
