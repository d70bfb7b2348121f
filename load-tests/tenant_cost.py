"""What the tenant + group restriction costs hybrid search (issue 31 item 8), on Milvus Lite.

100k chunks over 100 tenants (the tenant is the partition key), each chunk with 0-2 of 10 groups, written
directly through MilvusStore.upsert: random unit vectors (no embedder: the search cost does not depend on
where vectors came from) and real text for BM25 (paragraphs of the Milvus docs corpus, each chunk a
different window). Then the same queries through MilvusStore.hybrid_search three ways, interleaved:

- none:   no restriction (store.milvus.restricted patched to pass the filter through: the same code path);
- tenant: one tenant, every group (the operator's and the CLI's view);
- groups: one tenant and 1-2 groups (a keys-file principal).

    .venv/bin/python load-tests/tenant_cost.py [--chunks 100000] [--tenants 100] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from harness import CORPUS, RESULTS, machine

from ragserve.config import load_config
from ragserve.store import milvus
from ragserve.store.filters import Access
from ragserve.store.milvus import ChunkRecord, MilvusStore

DIM = 384  # all-MiniLM-L6-v2's
GROUPS = [f"g{i}" for i in range(10)]
WINDOW = 400  # characters of corpus text per chunk


def corpus_text(limit_chars: int = 4_000_000) -> str:
    """The Milvus docs as one string of words (Markdown syntax dropped), else this repo's docs."""
    root = CORPUS if CORPUS.exists() else Path(__file__).resolve().parents[1] / "docs"
    parts, size = [], 0
    for path in sorted(root.rglob("*.md")):
        text = re.sub(r"[#*`|>\[\]()_-]+", " ", path.read_text(errors="ignore"))
        parts.append(" ".join(text.split()))
        size += len(parts[-1])
        if size > limit_chars:
            break
    return " ".join(parts)


def chunks(n: int, tenants: int, rng: random.Random) -> Iterator[tuple[ChunkRecord, str]]:
    text = corpus_text()
    for i in range(n):
        start = rng.randrange(0, max(1, len(text) - WINDOW))
        body = text[start : start + WINDOW]
        tenant = f"t{i % tenants:03d}"
        groups = tuple(sorted(rng.sample(GROUPS, rng.choice((0, 0, 1, 2)))))
        yield ChunkRecord(f"c{i}", f"doc{i // 5}.md", "", body, i % 5, "h", "", "", tenant, groups), body


@contextmanager
def unrestricted() -> Iterator[None]:
    original = milvus.restricted
    milvus.restricted = lambda access, expr="": expr  # type: ignore[assignment]
    try:
        yield
    finally:
        milvus.restricted = original


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(31)
    home = Path(tempfile.mkdtemp(prefix="tenant-cost-"))
    # A long per-call timeout: writing 100k chunks with BM25 on a busy 2-core machine.
    store_overrides = {"timeout_s": 300, "write_batch_size": 2000}
    cfg = load_config(env={"RAGSERVE_HOME": str(home)}, overrides={"store": store_overrides})
    store = MilvusStore(cfg.store, require_bm25=True)
    store.ensure_collection(DIM, "random-unit-vectors")
    vectors_rng = np.random.default_rng(31)
    started = time.perf_counter()
    batch: list[ChunkRecord] = []
    texts: list[str] = []
    for record, body in chunks(args.chunks, args.tenants, rng):
        batch.append(record)
        if len(texts) < 5000:
            texts.append(body)
        if len(batch) == 5000:
            v = vectors_rng.standard_normal((len(batch), DIM)).astype(np.float32)
            store.upsert(batch, v / np.linalg.norm(v, axis=1, keepdims=True))
            batch = []
    if batch:
        v = vectors_rng.standard_normal((len(batch), DIM)).astype(np.float32)
        store.upsert(batch, v / np.linalg.norm(v, axis=1, keepdims=True))
    store.load()
    write_s = time.perf_counter() - started
    print(f"wrote {args.chunks} chunks over {args.tenants} tenants in {write_s:.0f} s", flush=True)

    def query() -> tuple[np.ndarray, str, Access, Access]:
        words = rng.choice(texts).split()
        start = rng.randrange(0, max(1, len(words) - 6))
        v = vectors_rng.standard_normal(DIM).astype(np.float32)
        tenant = f"t{rng.randrange(args.tenants):03d}"
        groups = frozenset(rng.sample(GROUPS, rng.choice((1, 2))))
        return (
            v / np.linalg.norm(v),
            " ".join(words[start : start + 6]),
            Access(tenant),
            Access(tenant, groups),
        )

    def timed(vector: np.ndarray, text: str, access: Access) -> tuple[float, int]:
        t0 = time.perf_counter()
        hits = store.hybrid_search(vector, text, args.top_k, access=access, candidates=args.candidates)
        return (time.perf_counter() - t0) * 1000, len(hits)

    for _ in range(20):  # warm-up
        v, text, tenant, groups = query()
        timed(v, text, groups)
        with unrestricted():
            timed(v, text, tenant)
    ms: dict[str, list[float]] = {"none": [], "tenant": [], "groups": []}
    found: dict[str, list[int]] = {k: [] for k in ms}
    for _ in range(args.queries):
        v, text, tenant, groups = query()
        order = ["none", "tenant", "groups"]
        rng.shuffle(order)  # no variant always runs first (cache) or last
        for name in order:
            if name == "none":
                with unrestricted():
                    t, n = timed(v, text, tenant)
            else:
                t, n = timed(v, text, tenant if name == "tenant" else groups)
            ms[name].append(t)
            found[name].append(n)
    load = os.getloadavg()
    rows = {
        name: {
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "mean_hits": round(statistics.mean(found[name]), 2),
        }
        for name, values in ms.items()
    }
    base = rows["none"]["p50_ms"]
    print(
        f"\nhybrid search, Milvus Lite, {args.chunks} chunks / {args.tenants} tenants, top_k {args.top_k}, "
        f"candidates {args.candidates}, {args.queries} queries each; {machine()}; load {load[0]:.1f}"
    )
    print(f"{'restriction':<28}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs none':>13}{'hits':>7}")
    labels = {"none": "none", "tenant": "tenant (every group)", "groups": "tenant + 1-2 of 10 groups"}
    for name, row in rows.items():
        ratio = row["p50_ms"] / base if base else float("nan")
        print(
            f"{labels[name]:<28}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{ratio:>12.2f}x"
            f"{row['mean_hits']:>7.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, Any] = {"args": vars(args), "write_s": write_s, "loadavg": load, "rows": rows}
    (RESULTS / "tenant_cost.json").write_text(json.dumps(out, indent=2))
    store.close()


if __name__ == "__main__":
    main()
