"""What the tenant + group restriction costs hybrid search (issue 31 item 8), on Milvus Lite.

100k chunks over 100 tenants (the tenant is the partition key), each chunk with 0-2 of 10 groups, written
directly through MilvusStore.upsert: random unit vectors (no embedder: the search cost does not depend on
where vectors came from) and real text for BM25 (paragraphs of the Milvus docs corpus, each chunk a
different window). Then the same queries through MilvusStore.hybrid_search, each way in shuffled order:

- none:   no restriction (store.milvus.restricted patched to pass the filter through: the same code path);
- tenant: one tenant, every group (the operator's and the CLI's view);
- groups: one tenant and 1-2 groups (a keys-file principal): the shipped expression (group_keys LIKE);
- all10:  one tenant and all 10 groups (11 LIKE terms);
- array:  the groups as `array_contains_any` on the groups array (restricted(keys=False): a 2.3 server's
          expression, and every collection's before group_keys), on the first --array-queries queries only
          (10-20x slower on Lite); its ratio is to `none` over the same queries.

--uri runs it on a Milvus server instead (the tests' 2.3 server has no BM25: dense search there).
load-tests/results/tenant_cost.md has the figures and the variants measured on the way.

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
def restriction(name: str) -> Iterator[None]:
    """What the store sends for ``name``: none (the filter alone), array (keys=False), else as shipped."""
    original = milvus.restricted
    if name == "none":
        milvus.restricted = lambda access, expr="", **_: expr
    elif name == "array":
        milvus.restricted = lambda access, expr="", **_: original(access, expr, keys=False)
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
    parser.add_argument("--array-queries", type=int, default=20, help="queries timed with the array form")
    parser.add_argument("--uri", help="a Milvus server (default: a fresh Milvus Lite file)")
    parser.add_argument("--out", default="tenant_cost.json", help="file name under load-tests/results")
    args = parser.parse_args()
    rng = random.Random(31)
    home = Path(tempfile.mkdtemp(prefix="tenant-cost-"))
    # A long per-call timeout: writing 100k chunks with BM25 on a busy 2-core machine.
    store_overrides: dict[str, Any] = {"timeout_s": 300, "write_batch_size": 2000}
    if args.uri:
        store_overrides.update(uri=args.uri, collection=f"tenant_cost_{os.getpid()}")
    cfg = load_config(env={"RAGSERVE_HOME": str(home)}, overrides={"store": store_overrides})
    store = MilvusStore(cfg.store, require_bm25=not args.uri)
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

    def query() -> tuple[np.ndarray, str, dict[str, Access]]:
        words = rng.choice(texts).split()
        start = rng.randrange(0, max(1, len(words) - 6))
        v = vectors_rng.standard_normal(DIM).astype(np.float32)
        tenant = f"t{rng.randrange(args.tenants):03d}"
        groups = frozenset(rng.sample(GROUPS, rng.choice((1, 2))))
        return (
            v / np.linalg.norm(v),
            " ".join(words[start : start + 6]),
            {
                "none": Access(tenant),
                "tenant": Access(tenant),
                "groups": Access(tenant, groups),
                "all10": Access(tenant, frozenset(GROUPS)),
                "array": Access(tenant, groups),
            },
        )

    hybrid = store.has_sparse  # a 2.3 server: dense search

    def timed(vector: np.ndarray, text: str, access: Access) -> tuple[float, int]:
        t0 = time.perf_counter()
        if hybrid:
            hits = store.hybrid_search(vector, text, args.top_k, access=access, candidates=args.candidates)
        else:
            hits = store.search(vector[None, :], args.top_k, access=access)[0]
        return (time.perf_counter() - t0) * 1000, len(hits)

    labels = {
        "none": "none",
        "tenant": "tenant (every group)",
        "groups": "tenant + 1-2 of 10 groups",
        "all10": "tenant + all 10 groups",
        "array": "1-2 groups, array form",
    }
    ms: dict[str, list[float]] = {k: [] for k in labels}
    found: dict[str, list[int]] = {k: [] for k in labels}
    base_of_array: list[float] = []  # none's times over the queries the array form ran on
    for i in range(-5, args.queries):  # 5 warm-up queries
        v, text, accesses = query()
        order = [k for k in labels if k != "array" or i < args.array_queries]
        rng.shuffle(order)  # no variant always runs first (cache) or last
        for name in order:
            with restriction(name):
                t, n = timed(v, text, accesses[name])
            if i >= 0:
                ms[name].append(t)
                found[name].append(n)
        if 0 <= i < args.array_queries:
            base_of_array.append(ms["none"][-1])
    load = os.getloadavg()
    rows = {
        name: {
            "queries": len(values),
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "p50_vs_none": round(
                statistics.median(values)
                / statistics.median(base_of_array if name == "array" else ms["none"]),
                2,
            ),
            "mean_hits": round(statistics.mean(found[name]), 2),
        }
        for name, values in ms.items()
        if values
    }
    server = "Milvus Lite" if cfg.store.is_lite else f"Milvus {store.client.get_server_version()}"
    search = "hybrid" if hybrid else "dense"
    print(
        f"\n{search} search, {server}, {args.chunks} chunks / {args.tenants} tenants, "
        f"top_k {args.top_k}, candidates {args.candidates}, {args.queries} queries; {machine()}; "
        f"load {load[0]:.1f}"
    )
    print(f"{'restriction':<28}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs none':>13}{'hits':>7}")
    for name, row in rows.items():
        print(
            f"{labels[name]:<28}{row['queries']:>5}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['p50_vs_none']:>12.2f}x{row['mean_hits']:>7.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, Any] = {
        "args": vars(args),
        "server": server,
        "search": search,
        "write_s": write_s,
        "loadavg": load,
        "rows": rows,
    }
    (RESULTS / args.out).write_text(json.dumps(out, indent=2))
    if args.uri:
        store.drop()
    store.close()


if __name__ == "__main__":
    main()
