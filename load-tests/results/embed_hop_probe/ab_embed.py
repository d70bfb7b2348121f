"""Throwaway probe (not part of the suite): what the Router -> Embedder handle call costs inside the real
app, by variant, interleaved in one run so the machine's drift falls on every variant alike.

    git apply --3way load-tests/results/embed_hop_probe/probe_after.patch   # the variants (28f36a8)
    .venv/bin/python load-tests/results/embed_hop_probe/ab_embed.py
    git checkout services                                                  # remove them again

The patch makes the router's embedder client cycle its calls over the Embedder methods in PROBE_MODES
(the same one may sit at two positions) and report the call's number in the search response's timings.
probe_before.patch holds the first variants, against 53b9c0c (the code with @serve.batch). /v1/search
runs at concurrency 1 with 20-ms pauses; every fourth request a bare encode of the same question runs in
this process (one torch thread, as a replica has). Runs so far: output.txt beside this file.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # load-tests/
import aiohttp
import torch
from harness import CORPUS, EVAL, machine, served_app

N = int(os.environ.get("N", "720"))


async def run(base: str, qs: list[str], encoder) -> None:
    from ray import serve

    from ragserve.embedder.deployment import PROBE_MODES

    by: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    bare: list[float] = []
    async with aiohttp.ClientSession(base) as s:
        for i in range(36):  # warm-up: every variant several times
            async with s.post("/v1/search", json={"query": qs[i % len(qs)], "top_k": 5}) as r:
                await r.read()
        for i in range(N):
            await asyncio.sleep(0.02)
            if i % 4 == 0:
                t = time.perf_counter()
                encoder.embed_queries([qs[i % len(qs)]])
                bare.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.02)
            t = time.perf_counter()
            async with s.post("/v1/search", json={"query": qs[i % len(qs)], "top_k": 5}) as r:
                body = await r.json()
            total = (time.perf_counter() - t) * 1000
            timings = body["timings"]
            position = int(timings["probe_call"]) % len(PROBE_MODES)
            mode = f"{position}:{PROBE_MODES[position]}"  # a variant can sit at two positions
            by[mode]["total"].append(total)
            by[mode]["embed"].append(timings["embed_ms"])
            by[mode]["milvus"].append(timings["search_ms"])
    inside = await serve.get_deployment_handle("Embedder", "ragserve").probe_encode_ms.remote()
    print(machine())
    print(f"bare encode in this process: p50 {statistics.median(bare):.2f} ms (n {len(bare)})")
    print(
        f"the encode in the replica (embed_queries): p50 {statistics.median(inside):.2f} ms (n {len(inside)})"
    )
    for mode in sorted(by):
        p50 = {k: round(statistics.median(v), 2) for k, v in by[mode].items()}
        print(f"{mode:20} p50 ms {p50} (n {len(by[mode]['total'])})")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="probe-"))
    env = {**os.environ, "RAGSERVE_HOME": str(home)}
    cmd = [sys.executable, "-m", "ragserve.cli", "ingest", str(CORPUS / "reference")]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    os.environ["RAGSERVE_HOME"] = str(home)
    qs = [json.loads(line)["question"] for line in EVAL.open()]
    from ragserve.config import load_config
    from ragserve.embedder.encoder import Encoder

    torch.set_num_threads(1)
    encoder = Encoder(load_config().embedder)
    with served_app({"data_dir": str(home)}, 8000) as base:
        asyncio.run(run(base, qs, encoder))


if __name__ == "__main__":
    main()
