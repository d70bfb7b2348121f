"""Encoder backends side by side (embedder.backend): PyTorch vs ONNX Runtime fp32 / int8 vs OpenVINO, on the
bundled MiniLM, in one run, interleaved (each round visits every backend, so load drift on a shared machine
falls on all of them; the figures are medians over rounds and the ratios are what to read).

  (1) encode: query latency at batch 1 (p50 over question texts), texts/s at batch 32/64/128 on the
      corpus's chunk texts, and the worst cosine of each backend's vectors to PyTorch's;
  (2) ingestion of the whole corpus with each backend (`ragserve ingest`, and `--ray` with --ray), against
      the walkthrough's loop (bench.py's `walkthrough`) and raw encode of the same chunks;
  (3) retrieval quality: `ragserve eval FILE --k 5 --json` on the dev set and eval/questions.jsonl against
      the collection each backend ingested (private RAGSERVE_HOME, one collection per backend).

    .venv/bin/python load-tests/encoder_backends.py [--corpus DIR] [--rounds 2] [--ray torch,onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench import raw_model, walkthrough
from harness import CORPUS, EVAL, RESULTS, machine

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["torch", "onnx", "onnx-int8", "openvino"]
BATCHES = [32, 64, 128]
METRICS = ("hit_rate_at_k", "recall_at_k", "mrr")
EVAL_SETS = {"dev": EVAL, "questions": REPO / "eval" / "questions.jsonl"}


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def encoders(home: Path, backends: list[str]) -> dict[str, Any]:
    from ragserve.config import load_config
    from ragserve.embedder.encoder import Encoder

    out = {}
    for b in backends:  # the first load of an exported backend writes its export into the private home
        cfg = load_config(env={**os.environ, **backend_env(home, b)})
        out[b] = Encoder(cfg.embedder)
    return out


def chunk_texts(cfg: Any, corpus: Path) -> tuple[list[Any], list[str]]:
    """The corpus's chunks as ingestion embeds them (title line included when ingest.embed_title)."""
    from ragserve.ingest.prepare import embed_text, make_splitter, prepare
    from ragserve.ingest.sources import discover, source_for

    splitter = make_splitter(cfg.ingest)
    records = [
        r
        for p in discover(corpus, cfg.ingest).files
        for r in prepare(p, source_for(p, corpus, None), cfg.ingest, splitter).records()
    ]
    return records, [embed_text(r, cfg.ingest.embed_title) for r in records]


def encode_rates(encs: dict[str, Any], queries: list[str], texts: list[str], rounds: int) -> dict[str, Any]:
    lat: dict[str, list[float]] = {b: [] for b in encs}
    cpu: dict[str, list[float]] = {b: [] for b in encs}  # process CPU ms per text at batch 32: load-robust
    rates: dict[str, dict[int, list[float]]] = {b: {n: [] for n in BATCHES} for b in encs}
    for enc in encs.values():  # warm-up
        enc.embed_queries(queries[:2])
        enc.embed_documents(texts[:16])
    for r in range(rounds):
        for b, enc in encs.items():
            for q in queries:
                t0 = time.perf_counter()
                enc.embed_queries([q])
                lat[b].append(time.perf_counter() - t0)
            for n in BATCHES:
                enc.cfg.batch_size = n
                t0, c0 = time.perf_counter(), time.process_time()
                enc.embed_documents(texts)
                rates[b][n].append(len(texts) / (time.perf_counter() - t0))
                if n == 32:
                    cpu[b].append(1000 * (time.process_time() - c0) / len(texts))
        print(f"  round {r + 1}/{rounds} done (load {load()})", flush=True)
    ref = encs["torch"].embed_documents(texts) if "torch" in encs else None
    out: dict[str, Any] = {}
    for b, enc in encs.items():
        row = {
            "query_p50_ms": round(1000 * statistics.median(lat[b]), 2),
            "texts_per_s": {n: round(statistics.median(v), 1) for n, v in rates[b].items()},
            "cpu_ms_per_text_b32": round(statistics.median(cpu[b]), 1),
        }
        if ref is not None:
            row["min_cosine_to_torch"] = round(float((enc.embed_documents(texts) * ref).sum(1).min()), 4)
        out[b] = row
    if "torch" in out:
        base = out["torch"]
        for row in out.values():
            row["query_speedup"] = round(base["query_p50_ms"] / row["query_p50_ms"], 2)
            row["texts_per_s_speedup"] = {
                n: round(row["texts_per_s"][n] / base["texts_per_s"][n], 2) for n in BATCHES
            }
    return out


def backend_env(home: Path, backend: str) -> dict[str, str]:
    """``backend`` for documents and questions alike (the local profile sends questions through onnx)."""
    return {
        "RAGSERVE_HOME": str(home),
        "RAGSERVE__EMBEDDER__BACKEND": backend,
        "RAGSERVE__EMBEDDER__QUERY_BACKEND": backend,
    }


def ragserve(home: Path, backend: str, *args: str) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, **backend_env(home, backend)}
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args, "--json"], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - t0
    if run.returncode not in (0, 1):  # 1: some files skipped (reported in the JSON)
        raise RuntimeError(f"ragserve {' '.join(args)} exited {run.returncode}: {run.stderr[-2000:]}")
    return seconds, json.loads(run.stdout)


def ingestion(
    home: Path, corpus: Path, backends: list[str], ray: list[str], records: list[Any], sample: int
) -> dict[str, Any]:
    """`ragserve ingest` of the whole corpus per backend (and `--ray` for the backends in ``ray``), against
    the walkthrough's loop timed on ``sample`` of the same chunks (its rate is per chunk: one encode() at
    batch 32 and one insert; the whole corpus would take as long again as a torch ingest). 0: none."""
    out: dict[str, Any] = {"chunks": len(records)}
    rng = np.random.default_rng(1)
    some = [records[i] for i in sorted(rng.choice(len(records), min(sample, len(records)), replace=False))]
    if some:
        model = raw_model(load_cfg(home))
        out["walkthrough_sample_chunks"] = len(some)
        out["walkthrough_chunks_per_s"] = round(len(some) / walkthrough(model, some), 1)
        del model
        print(f"  walkthrough: {out['walkthrough_chunks_per_s']} chunks/s (load {load()})", flush=True)

    def timed(b: str, key: str, *extra: str) -> dict[str, float]:
        collection = coll(b) + ("_ray" if "--ray" in extra else "")
        seconds, report = ragserve(home, b, "ingest", str(corpus), "--collection", collection, *extra)
        row = {
            f"{key}_seconds": round(seconds, 1),
            f"{key}_chunks_per_s": round((report["chunks_new"] + report["chunks_updated"]) / seconds, 1),
        }
        if some:
            row[f"{key}_over_walkthrough"] = round(
                row[f"{key}_chunks_per_s"] / out["walkthrough_chunks_per_s"], 2
            )
        return row

    for b in backends:
        row = timed(b, "ingest")
        if b in ray:
            row.update(timed(b, "ray_ingest", "--ray"))
        out[b] = row
        print(f"  {b}: {row} (load {load()})", flush=True)
    return out


def quality(home: Path, backends: list[str], collection: str | None = None) -> dict[str, Any]:
    """Each backend's retrieval on the collection it ingested, or (``collection``) every backend's queries
    on one collection: the fp32 backends' document vectors equal torch's within 1e-6, so one ingest serves."""
    out: dict[str, Any] = {}
    for b in backends:
        out[b] = {}
        for name, path in EVAL_SETS.items():
            target = collection or coll(b)
            _, report = ragserve(home, b, "eval", str(path), "--k", "5", "--collection", target)
            out[b][name] = {k: report[k] for k in METRICS}
    if "torch" in out:
        for b in backends:
            for name in EVAL_SETS:
                ref, row = out["torch"][name], out[b][name]
                row["delta_vs_torch"] = {k: round(row[k] - ref[k], 4) for k in METRICS}
    return out


def coll(backend: str) -> str:
    return "enc_" + backend.replace("-", "_")


def load_cfg(home: Path) -> Any:
    from ragserve.config import load_config

    return load_config(env={**os.environ, "RAGSERVE_HOME": str(home)})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the whole corpus by default")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--texts", type=int, default=128, help="chunk texts per encode-rate pass")
    parser.add_argument("--queries", type=int, default=20, help="batch-1 queries per round")
    parser.add_argument("--ray", default="", help="backends (comma list) also timed with `ingest --ray`")
    parser.add_argument("--walkthrough-chunks", type=int, default=1000, help="chunks the walkthrough encodes")
    parser.add_argument("--skip-encode", action="store_true", help="no encode rates (1)")
    parser.add_argument("--skip-ingest", action="store_true", help="no ingestion (2) nor quality (3)")
    parser.add_argument("--skip-quality", action="store_true", help="no quality (3)")
    parser.add_argument("--threads", type=int, default=0, help="encode (1) on N threads (0: the default)")
    parser.add_argument("--quality-collection", help="score every backend's queries on this collection")
    parser.add_argument("--home", type=Path, help="reuse (and keep) this RAGSERVE_HOME and its collections")
    parser.add_argument("--out", type=Path, default=RESULTS / "encoder_backends.json")
    args = parser.parse_args()
    backends = args.backends.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:  # as Ray sets it for a 1-CPU actor or replica: torch and the ONNX backends follow it
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    home = args.home or Path(tempfile.mkdtemp(prefix="ragserve-encoders-"))
    report: dict[str, Any] = {"machine": machine(), "corpus": str(args.corpus), "load_at_start": load()}
    try:
        cfg = load_cfg(home)
        records, texts = chunk_texts(cfg, args.corpus)
        rng = np.random.default_rng(0)
        sample = [texts[i] for i in rng.choice(len(texts), min(args.texts, len(texts)), replace=False)]
        queries = [json.loads(line)["question"] for line in EVAL_SETS["dev"].read_text().splitlines() if line]
        if not args.skip_encode:
            print(
                f"(1) encode: {len(sample)} chunk texts, {args.queries} queries (load {load()})", flush=True
            )
            encs = encoders(home, backends)
            report["encode"] = encode_rates(encs, queries[: args.queries], sample, args.rounds)
            print(json.dumps(report["encode"], indent=1), flush=True)
            del encs  # each `ragserve ingest` loads its own
        if not args.skip_ingest:
            print(f"(2) ingestion of {len(texts)} chunks ...", flush=True)
            ray = [b for b in args.ray.split(",") if b]
            report["ingestion"] = ingestion(
                home, args.corpus, backends, ray, records, args.walkthrough_chunks
            )
        if not args.skip_quality and (args.home or not args.skip_ingest):  # --home: collections already there
            print("(3) retrieval quality ...", flush=True)
            report["quality"] = quality(home, backends, args.quality_collection)
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    report["load_at_end"] = load()
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
