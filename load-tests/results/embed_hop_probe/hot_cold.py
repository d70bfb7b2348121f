"""Throwaway probe: one process, one torch thread, the same one-query encode three ways, in alternating
rounds: back to back, after 20 ms asleep, and after 20 ms asleep then 5 ms of spinning (a woken CPU).

    .venv/bin/python load-tests/results/embed_hop_probe/hot_cold.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # load-tests/
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
from harness import EVAL, machine

from ragserve.config import load_config
from ragserve.embedder.encoder import Encoder


def main() -> None:
    torch.set_num_threads(1)
    encoder = Encoder(load_config().embedder)
    qs = [json.loads(line)["question"] for line in EVAL.open()]
    for q in qs:
        encoder.embed_queries([q])
    ms: dict[str, list[float]] = {"back to back": [], "after 20 ms asleep": [], "asleep, then 5 ms spin": []}
    for _ in range(12):
        for mode, times in ms.items():
            for q in qs:
                if mode != "back to back":
                    time.sleep(0.02)
                if mode == "asleep, then 5 ms spin":
                    t0 = time.perf_counter()
                    while time.perf_counter() - t0 < 0.005:
                        pass
                t = time.perf_counter()
                encoder.embed_queries([q])
                times.append((time.perf_counter() - t) * 1000)
    print(machine())
    for mode, times in ms.items():
        print(f"{mode:24} p50 {statistics.median(times):.2f} ms (n {len(times)})")


if __name__ == "__main__":
    main()
