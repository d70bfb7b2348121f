"""One side of a before/after comparison of the served query path: `/v1/query` at saturation and the
streamed TTFT at concurrency 1, on a fresh app of whatever ragserve code is first on the path.

Run it alternately from two trees, one at a time, both with PYTHONPATH set the same way, on a collection
ingested once (both trees must share its schema):

    RAGSERVE_HOME=/tmp/ab .venv/bin/ragserve ingest ../shared/corpus/milvus-docs/site/en/reference
    cd <before>/load-tests && PYTHONPATH=<before>/services <venv>/python query_ab.py --home /tmp/ab --label b
    cd load-tests && PYTHONPATH=../services ../.venv/bin/python query_ab.py --home /tmp/ab --label a

Prints one JSON line per run: requests/s of each saturation round and the TTFT p50 (first `delta` event).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import machine, served_app
from overhead import TOP_K, covered_questions

PORT = 8782


async def measure(
    base: str, qs: list[str], rounds: int, per_round: int, c: int, streams: int
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for q in qs[:3]:  # warm-up
            (await client.post("/v1/query", json={"question": q, "top_k": TOP_K})).raise_for_status()
        sem = asyncio.Semaphore(c)

        async def one(i: int) -> None:
            async with sem:
                res = await client.post("/v1/query", json={"question": qs[i % len(qs)], "top_k": TOP_K})
                res.raise_for_status()

        rps = []
        for r in range(rounds):
            t0 = time.perf_counter()
            await asyncio.gather(*(one(r * per_round + i) for i in range(per_round)))
            rps.append(round(per_round / (time.perf_counter() - t0), 2))
        ttft = []
        for i in range(streams):
            body = {"question": qs[i % len(qs)], "top_k": TOP_K, "stream": True}
            t0 = time.perf_counter()
            first, event = None, None
            async with client.stream("POST", "/v1/query", json=body) as res:
                res.raise_for_status()
                async for line in res.aiter_lines():
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: ") and event == "delta" and first is None:
                        first = (time.perf_counter() - t0) * 1000
            if first is not None:
                ttft.append(first)
    return {"rps": rps, "ttft_p50_ms": round(float(np.median(ttft)), 1), "ttft_n": len(ttft)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="RAGSERVE_HOME with the ingested collection")
    parser.add_argument("--label", default="", help="written into the output line (before / after)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--streams", type=int, default=30)
    args = parser.parse_args()

    from ragserve.config import load_config
    from ragserve.observability.logging import configure_logging

    configure_logging(False)
    qs = covered_questions(load_config(env={"RAGSERVE_HOME": str(args.home)}))
    with served_app({"data_dir": str(args.home)}, PORT) as base:
        out = asyncio.run(measure(base, qs, args.rounds, args.per_round, args.concurrency, args.streams))
    print(json.dumps({"label": args.label, "machine": machine(), **out}), flush=True)


if __name__ == "__main__":
    main()
