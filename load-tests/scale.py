"""Search latency, throughput, memory and build time against corpus size (issue 32 item 1).

For each store (Milvus Lite, served by its own process as the ``MilvusLite`` deployment serves it; the
standalone Milvus 2.3 server the integration tests start) and each size, chunks are written directly through
``MilvusStore.upsert``: real chunk texts (the Milvus docs corpus chunked by ragserve's own splitter, cycled)
with synthetic 384-d unit vectors, clustered like sentence embeddings (2048 centres; a query is a stored
vector plus noise, so it has true near neighbours). Then, per vector index (FLAT, IVF_FLAT, HNSW, AUTOINDEX:
whichever the store accepts), the index is rebuilt on the same rows and measured:

- build: create_index until built, plus load_collection (seconds);
- dense search through ``MilvusStore.search`` (top 10): p50/p99 at concurrency 1 and recall@10 against the
  exact top 10 (numpy over every vector, what FLAT returns); req/s with ``--clients`` threads (saturation);
- hybrid search (Lite only: the 2.3 server predates BM25) through ``MilvusStore.hybrid_search`` with the
  served defaults (retrieval.candidates, rrf): the same two latency figures;
- the store process's resident memory (RSS, children included) after load, and its data directory's size.

Every phase is bounded (``--queries``, ``--seconds``) and the run stops starting new work at ``--deadline``
(UTC, HH:MM), recording what it skipped.

    nice -n 5 .venv/bin/python load-tests/scale.py [--sizes 10000,100000,1000000] [--stores lite,server]
        [--indexes FLAT,AUTOINDEX,IVF_FLAT,HNSW] [--queries 100] [--seconds 10] [--clients 4]
        [--deadline 14:05] [--plot-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from harness import CORPUS, RESULTS, machine
from pymilvus import MilvusException

from ragserve.config import AppConfig, load_config
from ragserve.ingest.prepare import make_splitter, prepare
from ragserve.ingest.sources import discover
from ragserve.store.filters import DEFAULT_ACCESS
from ragserve.store.milvus import ChunkRecord, MilvusStore
from ragserve.store.schema import VECTOR_FIELD

DIM = 384  # all-MiniLM-L6-v2's
TOPICS, SUBTOPICS, SUB_WEIGHT, NOISE = 256, 16, 0.6, 0.7  # see vectors()
QUERY_NOISE = 0.5  # a query: a stored vector plus noise of this norm (cosine ~0.9 to it)
TOP_K = 10
BATCH = 5000  # rows generated and upserted per step


def index_params(index: str, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(build, search) parameters: IVF lists grow with the corpus; HNSW and AUTOINDEX as documented."""
    if index == "IVF_FLAT":
        return {"nlist": 128 if n <= 10_000 else 512 if n <= 100_000 else 1024}, {"nprobe": 16}
    if index == "HNSW":
        return {"M": 16, "efConstruction": 100}, {"ef": 64}
    return {}, {}


# ---- data --------------------------------------------------------------------------------------------
def real_chunks(cfg: AppConfig) -> list[ChunkRecord]:
    """The corpus chunked as ``ragserve ingest`` chunks it (no embedding)."""
    splitter = make_splitter(cfg.ingest)
    records: list[ChunkRecord] = []
    for path in discover(CORPUS, cfg.ingest).files:
        try:
            records += prepare(path, str(path.relative_to(CORPUS)), cfg.ingest, splitter).records()
        except Exception:  # a page the loader refuses is left out, as ingest would
            continue
    return records


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def vectors(n: int, seed: int = 32) -> np.ndarray:
    """Unit vectors in topics and sub-topics: cosine ~0.8 within a sub-topic, ~0.6 within a topic, ~0
    across, so a query's 2nd..10th neighbours sit at ~0.6..0.4 as MiniLM's do on this corpus. (Plain
    random vectors have no neighbours worth the name: IVF's recall@10 on them was 0.53 at 3k rows.)"""
    rng = np.random.default_rng(seed)
    topics = unit(rng.standard_normal((TOPICS, DIM)))
    subs = unit(rng.standard_normal((TOPICS * SUBTOPICS, DIM)))
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        sub = rng.integers(0, TOPICS * SUBTOPICS, m)
        noise = unit(rng.standard_normal((m, DIM)))
        out[start : start + m] = unit(topics[sub // SUBTOPICS] + SUB_WEIGHT * subs[sub] + NOISE * noise)
    return out


def queries(data: np.ndarray, templates: list[ChunkRecord], count: int, seed: int = 33):
    """(vector, text) pairs: a stored vector plus noise, and six words of a real chunk (for BM25)."""
    rng = np.random.default_rng(seed)
    picked = data[rng.integers(0, len(data), count)]
    q = unit(picked + QUERY_NOISE * rng.standard_normal(picked.shape).astype(np.float32) / math.sqrt(DIM))
    texts = []
    for i in rng.integers(0, len(templates), count):
        words = templates[i].chunk.split()
        start = int(rng.integers(0, max(1, len(words) - 6)))
        texts.append(" ".join(words[start : start + 6]) or "index")
    return q, texts


def exact_top(data: np.ndarray, q: np.ndarray, k: int = TOP_K) -> list[set[str]]:
    """The exact top k by cosine (vectors are unit length): what FLAT returns, without asking it."""
    top = np.vstack([np.argpartition(-(part @ data.T), k, axis=1)[:, :k] for part in np.array_split(q, 10)])
    return [{f"c{i}" for i in row} for row in top]


def write(
    store: MilvusStore, data: np.ndarray, templates: list[ChunkRecord], cap_s: float, min_free_gib: float
) -> tuple[float, int, str]:
    """Upsert ``data`` in batches and flush: (seconds, rows written, why it stopped early or "")."""
    started = time.perf_counter()
    stopped = ""
    for start in range(0, len(data), BATCH):
        free = psutil.virtual_memory().available / 2**30
        if free < min_free_gib:  # a shared machine: the store is not allowed to starve the others
            stopped = f"memory: {free:.1f} GiB available after {start} rows"
        elif time.perf_counter() - started > cap_s:
            stopped = f"time: --write-cap-s {cap_s:.0f} s reached after {start} rows"
        if stopped:
            print(f"    stopped writing ({stopped})", flush=True)
            break
        batch = []
        for i in range(start, min(start + BATCH, len(data))):
            t = templates[i % len(templates)]
            lap = i // len(templates)
            batch.append(
                ChunkRecord(
                    f"c{i}", f"{t.source}#{lap}", t.title, t.chunk, t.chunk_index, t.doc_hash, t.breadcrumb
                )
            )
        store.upsert(batch, data[start : start + len(batch)])
        if start and start % 100_000 == 0:
            print(f"    {start} rows, {time.perf_counter() - started:.0f} s", flush=True)
    # Sealed segments, as a collection is after ingestion settles: Lite searches its unflushed memtable
    # several times slower (3k rows: 280 ms against 75 ms), and a server builds indexes on sealed segments.
    store.client.flush(store.collection, timeout=3600)
    written = int(store.client.query(store.collection, output_fields=["count(*)"])[0]["count(*)"])
    return time.perf_counter() - started, written, stopped


# ---- stores ------------------------------------------------------------------------------------------
@dataclass
class Running:
    uri: str
    process: psutil.Process
    data_dir: Path


def rss_mib(process: psutil.Process) -> float:
    procs = [process, *process.children(recursive=True)]
    total = 0
    for p in procs:
        with suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return round(total / 2**20, 1)


def dir_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


@contextmanager
def lite_owner(tmp: Path) -> Iterator[Running]:
    """Milvus Lite in its own process through ragserve's LiteServer (the MilvusLite deployment's code)."""
    db = tmp / "milvus.db"
    code = (
        "import sys, time\nfrom ragserve.store.lite_server import LiteServer\n"
        f"s = LiteServer({str(db)!r})\nprint(s.port, flush=True)\nsys.stdin.read()\ns.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield Running(f"http://127.0.0.1:{port}", psutil.Process(proc.pid), db)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def milvus_server(tmp: Path) -> Iterator[Running]:
    """The integration tests' standalone Milvus 2.3 server (ragserve_testkit.milvus_server)."""
    from ragserve_testkit import milvus_server as server

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with server(Path(tempfile.mkdtemp(prefix="milvus-server", dir=tmp))) as uri:
        new = [p for p in psutil.Process().children() if p.pid not in before and "milvus" in p.name()]
        yield Running(uri, new[0], tmp)


STORES: dict[str, Callable[[Path], Any]] = {"lite": lite_owner, "server": milvus_server}


def connect(uri: str, index: str, n: int) -> MilvusStore:
    build, search = index_params(index, n)
    overrides = {
        "uri": uri,
        "collection": "scale",
        "index_type": index,
        "index_params": build,
        "search_params": search,
        "timeout_s": 600,
        "write_batch_size": 2000,
        "consistency_level": "Bounded",  # reads after the load need not wait for writes
    }
    cfg = load_config(env={"RAGSERVE_HOME": tempfile.mkdtemp()}, overrides={"store": overrides})
    return MilvusStore(cfg.store)


def wait_built(store: MilvusStore) -> None:
    """Until the vector index covers every row (a server builds it in the background)."""
    client, name = store.client, store.collection
    while True:
        info = client.describe_index(name, client.list_indexes(name, field_name=VECTOR_FIELD)[0])
        if int(info.get("pending_index_rows", 0) or 0) == 0 and info.get("state", "Finished") == "Finished":
            return
        time.sleep(1)


def rebuild_index(store: MilvusStore, index: str, n: int) -> float:
    """Replace the vector index on the stored rows and load the collection: seconds until searchable."""
    client, name = store.client, store.collection
    build, _ = index_params(index, n)
    started = time.perf_counter()
    client.release_collection(name)
    for old in client.list_indexes(name, field_name=VECTOR_FIELD):
        client.drop_index(name, old)
    params = client.prepare_index_params()
    params.add_index(field_name=VECTOR_FIELD, index_type=index, metric_type=store.cfg.metric, params=build)
    try:
        client.create_index(name, params, timeout=3600)
    except MilvusException as err:
        # A long build outlives the channel's keepalive (Lite's server answers GOAWAY "too_many_pings"),
        # pymilvus sends create_index again, and the repeat meets the index the first one is building.
        if "already exists" not in str(err):
            raise
    wait_built(store)
    client.load_collection(name, timeout=3600)
    return time.perf_counter() - started


# ---- measurements ------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sequential(call: Callable[[int], Any], count: int, seconds: float) -> tuple[list[float], list[Any]]:
    """Concurrency 1: ``count`` calls or ``seconds``, whichever ends first (after 3 warm-up calls)."""
    for i in range(3):
        call(i)
    ms, results = [], []
    stop = time.perf_counter() + seconds
    for i in range(count):
        t0 = time.perf_counter()
        results.append(call(i))
        ms.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() > stop and len(ms) >= 10:
            break
    return ms, results


def saturation(call: Callable[[int], Any], clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(c: int) -> None:
        i = c
        while time.perf_counter() < stop:
            call(i)
            done[c] += 1
            i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(sum(done) / (time.perf_counter() - started), 2)


def measure_index(
    store: MilvusStore,
    running: Running,
    index: str,
    n: int,
    q: np.ndarray,
    texts: list[str],
    truth: list[set[str]],
    args: argparse.Namespace,
    cfg: AppConfig,
    hybrid: bool,
    keep: bool = False,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "index": index,
        "params": dict(zip(("build", "search"), index_params(index, n), strict=True)),
    }
    try:
        if keep:  # no rebuild: release + load (Lite builds what the segments lack on load)
            started = time.perf_counter()
            wait_built(store)
            store.client.release_collection(store.collection)
            store.client.load_collection(store.collection, timeout=3600)
            row["build_load_s"] = round(time.perf_counter() - started, 2)
            row["created_with_collection"] = True
        else:
            row["build_load_s"] = round(rebuild_index(store, index, n), 2)
    except Exception as err:  # measured, not assumed: a store that refuses an index says so here
        row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        print(f"    {index}: refused ({row['error']})", flush=True)
        return row
    row["rss_mib"] = rss_mib(running.process)
    probe = connect(running.uri, index, n)  # its search_params are this index's
    probe.has_sparse = store.has_sparse

    def dense(i: int) -> list[str]:
        return [h.id for h in probe.search(q[i % len(q)][None, :], TOP_K, access=DEFAULT_ACCESS)[0]]

    ms, found = sequential(dense, args.queries, args.seconds)
    row["dense"] = {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "queries": len(ms),
        f"recall@{TOP_K}": round(
            statistics.mean(len(set(f) & truth[i]) / TOP_K for i, f in enumerate(found)), 4
        ),
        "req_s": saturation(dense, args.clients, args.seconds),
    }
    if hybrid:
        r = cfg.retrieval

        def fused(i: int) -> int:
            hits = probe.hybrid_search(
                q[i % len(q)],
                texts[i % len(q)],
                cfg.prompt.top_k,
                access=DEFAULT_ACCESS,
                candidates=r.candidates,
                fusion=r.fusion,
                rrf_k=r.rrf_k,
                dense_weight=r.dense_weight,
            )
            return len(hits)

        ms, _ = sequential(fused, args.queries, args.seconds)
        row["hybrid"] = {
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(percentile(ms, 0.99), 2),
            "queries": len(ms),
            "req_s": saturation(fused, args.clients, args.seconds),
        }
    row["rss_after_mib"] = rss_mib(running.process)
    probe.close()
    print(f"    {json.dumps(row)}", flush=True)
    return row


def run_size(
    kind: str,
    n: int,
    data: np.ndarray,
    templates: list[ChunkRecord],
    args: argparse.Namespace,
    cfg: AppConfig,
    deadline: dt.datetime,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"scale-{kind}-{n}-"))
    q, texts = queries(data, templates, args.queries)
    truth = exact_top(data, q)
    out: dict[str, Any] = {"store": kind, "chunks": n, "indexes": []}
    with STORES[kind](tmp) as running:
        out["rss_empty_mib"] = rss_mib(running.process)
        first = args.indexes[0] if args.keep_first else "FLAT"
        store = connect(running.uri, first, n)
        store.ensure_collection(DIM, "synthetic-clustered-unit-vectors")
        out["bm25"] = store.has_sparse
        print(f"  {kind} {n}: writing (BM25: {store.has_sparse})", flush=True)
        write_s, written, stopped = write(store, data, templates, args.write_cap_s, args.min_free_gib)
        out["write_s"] = round(write_s, 1)
        if stopped:  # measured at the size reached
            out.update(chunks=written, target_chunks=n, write_stopped=stopped)
            n, data = written, data[:written]
            q, texts = queries(data, templates, args.queries)
            truth = exact_top(data, q)
        out["rows_per_s"] = round(n / out["write_s"], 1)
        out["rss_written_mib"] = rss_mib(running.process)
        print(f"  {kind} {n}: wrote in {out['write_s']} s ({out['rows_per_s']} rows/s)", flush=True)
        for position, index in enumerate(args.indexes):
            if dt.datetime.now(dt.UTC) > deadline:
                out["indexes"].append({"index": index, "skipped": "deadline"})
                continue
            hybrid = store.has_sparse and (n <= 100_000 or position == 0)
            keep = args.keep_first and position == 0
            row = measure_index(store, running, index, n, q, texts, truth, args, cfg, hybrid, keep)
            out["indexes"].append(row)
        out["data_dir_mib"] = dir_mib(running.data_dir)
        store.close()
    return out


# ---- report ------------------------------------------------------------------------------------------
def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6))
    # (store, mode, index) -> {chunks: row}; a later run of the same point replaces an earlier one
    series: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for run in doc["runs"]:
        for row in run["indexes"]:
            for mode in ("dense", "hybrid"):
                if mode in row:
                    series.setdefault((run["store"], mode, row["index"]), {})[run["chunks"]] = row[mode]
    colours = {"FLAT": "tab:red", "IVF_FLAT": "tab:orange", "HNSW": "tab:blue", "AUTOINDEX": "tab:green"}
    styles = {("lite", "dense"): "-", ("lite", "hybrid"): ":", ("server", "dense"): "--"}
    for (store, mode, index), points in sorted(series.items()):
        xs = sorted(points)
        kw = {"color": colours.get(index), "linestyle": styles[(store, mode)], "marker": "o"}
        label = f"{store} {mode} {index}"
        axes[0].plot(xs, [points[x]["p50_ms"] for x in xs], label=label, **kw)
        axes[1].plot(xs, [points[x]["req_s"] for x in xs], **kw)
    mem: dict[str, dict[int, float]] = {}
    for run in doc["runs"]:
        if run.get("skipped"):
            continue
        rss = [r.get(k, 0) for r in run["indexes"] for k in ("rss_mib", "rss_after_mib")]
        peak = max([*rss, run.get("rss_written_mib", 0)])
        mem.setdefault(run["store"], {})[run["chunks"]] = peak / 1024
    for store, gib in sorted(mem.items()):
        xs = sorted(gib)
        axes[2].plot(xs, [gib[x] for x in xs], marker="o", label=store)
    titles = (
        "p50 latency, concurrency 1 (ms)",
        f"req/s, {doc['args']['clients']} clients",
        "store RSS (GiB)",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chunks")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=7)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"ragserve search vs corpus size ({doc['machine']}; load {doc['loadavg_end'][0]:.1f})")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)


def table(doc: dict[str, Any]) -> str:
    """The runs as a Markdown table (scale.md carries it)."""
    lines = [
        "| store | chunks | write s (rows/s) | index | build+load s | RSS MiB | dense p50/p99 ms "
        f"| dense req/s | recall@{TOP_K} | hybrid p50/p99 ms | hybrid req/s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in doc["runs"]:
        if run.get("skipped"):
            lines.append(f"| {run['store']} | {run['chunks']:,} | skipped: {run['skipped']} |||||||||")
            continue
        write_s = f"{run['write_s']:.0f} ({run['rows_per_s']:.0f})"
        for row in run["indexes"]:
            if "dense" not in row:
                why = row.get("skipped") or row.get("error", "")[:90]
                lines.append(
                    f"| {run['store']} | {run['chunks']:,} | {write_s} | {row['index']} | {why} |||||||"
                )
                continue
            d, h = row["dense"], row.get("hybrid")
            rss = max(row["rss_mib"], row["rss_after_mib"])
            hybrid = f"{h['p50_ms']:.0f} / {h['p99_ms']:.0f} | {h['req_s']:.3g}" if h else "- | -"
            lines.append(
                f"| {run['store']} | {run['chunks']:,} | {write_s} | {row['index']} "
                f"| {row['build_load_s']:.0f} | {rss:.0f} | {d['p50_ms']:.1f} / {d['p99_ms']:.0f} "
                f"| {d['req_s']:.3g} | {d[f'recall@{TOP_K}']:.3f} | {hybrid} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--stores", default="lite,server")
    parser.add_argument("--indexes", default="FLAT,AUTOINDEX,IVF_FLAT,HNSW")
    parser.add_argument("--queries", type=int, default=100, help="concurrency-1 queries per measurement")
    parser.add_argument("--seconds", type=float, default=10, help="time cap of each latency/saturation phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for req/s at saturation")
    parser.add_argument("--deadline", default="14:05", help="UTC HH:MM: no new phase starts after it")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--plot-only", action="store_true", help="redraw scale.png, print the table of --out")
    parser.add_argument(
        "--keep-first",
        action="store_true",
        help="create the collection with the first of --indexes and measure it as written (no rebuild)",
    )
    parser.add_argument("--write-cap-s", type=float, default=3600, help="stop writing a size after this")
    parser.add_argument("--min-free-gib", type=float, default=4, help="stop writing below this much memory")
    parser.add_argument("--append", action="store_true", help="add this run's sizes to --out's runs")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        print(table(json.loads(args.out.read_text())))
        return
    args.indexes = args.indexes.split(",")
    hh, mm = map(int, args.deadline.split(":"))
    deadline = dt.datetime.now(dt.UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    cfg = load_config(env={"RAGSERVE_HOME": tempfile.mkdtemp()})
    templates = real_chunks(cfg)
    print(
        f"{len(templates)} real chunks from {CORPUS}; {machine()}; load {os.getloadavg()[0]:.1f}", flush=True
    )
    doc: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "real_chunks": len(templates),
        "loadavg_start": os.getloadavg(),
        "data": {"topics": TOPICS, "subtopics": SUBTOPICS, "sub_weight": SUB_WEIGHT, "noise": NOISE},
        "runs": [],
    }
    if args.append and args.out.exists():
        doc["runs"] = json.loads(args.out.read_text())["runs"]
    sizes = sorted(int(s) for s in args.sizes.split(","))
    data = vectors(max(sizes))
    for n in sizes:
        for kind in args.stores.split(","):
            if dt.datetime.now(dt.UTC) > deadline:
                doc["runs"].append({"store": kind, "chunks": n, "indexes": [], "skipped": "deadline"})
                continue
            started = time.perf_counter()
            doc["runs"].append(run_size(kind, n, data[:n], templates, args, cfg, deadline))
            doc["runs"][-1]["total_s"] = round(time.perf_counter() - started, 1)
            doc["runs"][-1]["loadavg"] = os.getloadavg()
            doc["loadavg_end"] = os.getloadavg()
            args.out.write_text(json.dumps(doc, indent=2))  # what is done survives a later failure
    doc["loadavg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(doc, indent=2))
    plot(doc, args.out.with_suffix(".png"))
    print(table(doc))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
