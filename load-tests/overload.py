"""Overload behaviour: offer twice the saturation rate of /v1/query and measure what is admitted.

1. Saturation: closed loop at concurrency C for a while -> the sustainable rate R (req/s).
2. Overload: open loop at 2 x R for D seconds with bounded queues (generator max_queued_requests).
Reports offered, admitted (200), rejected (503/429 with Retry-After), other errors, and p50/p99 of admitted.

    .venv/bin/python load-tests/overload.py [--corpus DIR] [--duration 30] [--factor 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
from harness import CORPUS as FULL_CORPUS
from harness import ingest_private, served_app

CORPUS = FULL_CORPUS / "reference"
PORT = 8778
QUESTION = {"question": "What do the parameters for HNSW mean?", "top_k": 3}


async def saturation(client: httpx.AsyncClient, concurrency: int, seconds: float) -> float:
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            if (await client.post("/v1/query", json=QUESTION)).status_code == 200:
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def open_loop(client: httpx.AsyncClient, rate: float, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    retry_after = 0

    async def one() -> None:
        nonlocal retry_after
        t0 = time.perf_counter()
        try:
            res = await client.post("/v1/query", json=QUESTION)
            code = str(res.status_code)
            if res.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            elif res.headers.get("retry-after"):
                retry_after += 1
        except httpx.HTTPError as err:
            code = type(err).__name__
        codes[code] = codes.get(code, 0) + 1

    tasks = []
    started = time.monotonic()
    n = int(rate * seconds)
    for i in range(n):  # evenly spaced arrivals, independent of completions
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    ms = np.array(latencies) * 1000
    return {
        "offered": n,
        "offered_rps": round(rate, 2),
        "codes": codes,
        "rejected_with_retry_after": retry_after,
        "admitted_p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "admitted_p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


async def run(home: Path, args: argparse.Namespace) -> dict[str, object]:
    app_args = {
        "data_dir": str(home),
        "generator": {
            "deployment": {"max_ongoing_requests": 8, "max_queued_requests": 8, "retry_after_s": 1}
        },
        "router": {
            "request_timeout_s": 60,
            "deployment": {
                "max_ongoing_requests": args.router_ongoing,
                "max_queued_requests": args.router_queue,
            },
        },
    }
    with served_app(app_args, PORT) as base:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=90, limits=limits) as client:
            await client.post("/v1/query", json=QUESTION)  # warm-up
            rate = await saturation(client, args.concurrency, args.duration / 2)
            result = await open_loop(client, rate * args.factor, args.duration)
            router = {"router_max_ongoing": args.router_ongoing, "router_max_queued": args.router_queue}
            return {"saturation_rps": round(rate, 2), "factor": args.factor, **router, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--router-ongoing", type=int, default=256, help="router max_ongoing_requests")
    parser.add_argument(
        "--router-queue", type=int, default=-1, help="router max_queued_requests (-1: unbounded)"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(ingest_private(args.corpus), args)), indent=2))


if __name__ == "__main__":
    main()
