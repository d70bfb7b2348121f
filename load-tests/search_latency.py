"""`/v1/search` at concurrency 1, served, before and after questions went through the ONNX export
(``embedder.query_backend``), in one run (issue 32's search goal).

Each variant is the whole Serve app on a local Ray over the same ingested collection; the variants take
turns (``--rounds`` each, alternating) so load drift on a shared machine falls on both. Per request: the
client's wall time, and the router's own ``embed_ms`` and ``search_ms`` from the response's timings.

    .venv/bin/python load-tests/search_latency.py --home DIR [--requests 150] [--rounds 2]

DIR: a RAGSERVE_HOME with the collection ingested (``ragserve ingest <corpus>``; the whole corpus by
default in RESULTS.md). The questions are the dev set's and eval/questions.jsonl's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import EVAL, REPO, RESULTS, free_port, machine, served_app

VARIANTS = {"torch": "torch", "onnx": "onnx"}  # name: embedder.query_backend


def questions() -> list[str]:
    files = [EVAL, REPO / "eval" / "questions.jsonl"]
    return [
        json.loads(line)["question"] for f in files for line in f.read_text().splitlines() if line.strip()
    ]


def one_round(base: str, qs: list[str], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"wall_ms": [], "embed_ms": [], "search_ms": []}
    with httpx.Client(base_url=base, timeout=60) as client:
        for q in qs[:10]:  # warm-up: first calls load lazily and fill caches
            client.post("/v1/search", json={"query": q}).raise_for_status()
        for i in range(n):
            t0 = time.perf_counter()
            res = client.post("/v1/search", json={"query": qs[i % len(qs)]})
            wall = (time.perf_counter() - t0) * 1000
            res.raise_for_status()
            timings = res.json()["timings"]
            out["wall_ms"].append(wall)
            out["embed_ms"].append(timings["embed_ms"])
            out["search_ms"].append(timings["search_ms"])
    return out


def summary(samples: dict[str, list[float]]) -> dict[str, float]:
    out = {}
    for key, values in samples.items():
        out[f"{key}_p50"] = round(float(np.percentile(values, 50)), 2)
        out[f"{key}_p99"] = round(float(np.percentile(values, 99)), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="RAGSERVE_HOME with the collection")
    parser.add_argument("--requests", type=int, default=150, help="timed requests per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per variant, alternating")
    parser.add_argument("--out", type=Path, default=RESULTS / "search_latency.json")
    args = parser.parse_args()

    from ragserve.config import TINY_LLAMA

    qs = questions()
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    loads = []
    for r in range(args.rounds):
        for name, backend in VARIANTS.items():
            app_args = {
                "data_dir": str(args.home),
                "embedder": {"query_backend": backend},
                "generator": {"model": TINY_LLAMA},  # not called by /v1/search; the small one starts fast
            }
            with served_app(app_args, free_port()) as base:
                got = one_round(base, qs, args.requests)
            for key, values in got.items():
                samples[name].setdefault(key, []).extend(values)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1} {name}: {summary(got)} (load {loads[-1]:.1f})", flush=True)
    report: dict[str, Any] = {
        "machine": machine(),
        "home": str(args.home),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "load_1min_after_each_round": [round(x, 1) for x in loads],
        "variants": {name: summary(s) for name, s in samples.items()},
    }
    before, after = report["variants"]["torch"], report["variants"]["onnx"]
    report["onnx_over_torch_wall_p50"] = round(after["wall_ms_p50"] / before["wall_ms_p50"], 3)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
