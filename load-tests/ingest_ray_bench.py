"""Local ingest vs `ingest --ray` on this machine: chunks/s and CPU seconds per chunk, one run each.

Every variant is the real CLI in a subprocess with a fresh RAGSERVE_HOME (Milvus Lite) on the same pages.
Two rates per run: the report's (from discovery to the last write; the --ray one includes Ray Data's start
of the actors and their model loads) and the wall clock of the whole command (process start, model loads,
Ray's start and stop). CPU seconds: every process of the command's tree (Ray's raylet, GCS, workers and
actors included), sampled every 0.2 s, so a process that lives less than that is missed.

    .venv/bin/python load-tests/ingest_ray_bench.py [--pages 80] [--out results/ingest_ray.json]

ray variants: ACTORSxCPUS:BATCH (embedding actors, logical CPUs per actor, chunks per actor call). Ray gives
each actor OMP_NUM_THREADS = its CPUs, so torch runs that many threads in it; on 2 cores 2x1 and 1x2 use the
same hardware. Nothing here claims more cores than the machine has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from harness import CORPUS, RESULTS, machine

REPO = Path(__file__).resolve().parents[1]


def tree_cpu(proc: subprocess.Popen[str], stop: threading.Event, seen: dict[int, tuple[float, str]]) -> None:
    """Last-seen user+system seconds of every process under ``proc``, with what it was (a Ray worker's
    task or actor title, not ``ray::IDLE``, which it shows between tasks)."""
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                t = p.cpu_times()
                title = "driver (ragserve ingest)" if p.pid == root.pid else process_kind(p)
            except psutil.Error:
                continue
            label = seen.get(p.pid, (0.0, title))[1]
            if title != "ray::IDLE" and (title.startswith("ray::") or not label.startswith("ray::")):
                label = title  # the busiest title so far: what the worker did, not that it idled
            seen[p.pid] = (t.user + t.system, label)
        stop.wait(0.2)


def process_kind(p: psutil.Process) -> str:
    """raylet, gcs_server, ray::EmbedChunks, ray::MapBatches(parse_files), ... (argv[0] or the name)."""
    argv = p.cmdline()
    title = argv[0] if argv else p.name()
    if "python" in Path(title).name and len(argv) > 1:  # Ray's helper scripts: the script's name
        title = Path(argv[1]).name
    return Path(title).name if "/" in title and not title.startswith("ray::") else title.split(" ")[0]


def run(docs: Path, extra: list[str], env_extra: dict[str, str]) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    env = {**os.environ, "RAGSERVE_HOME": str(home), **env_extra}
    cmd = [sys.executable, "-m", "ragserve.cli", "ingest", str(docs), "--json", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, tuple[float, str]] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=tree_cpu, args=(proc, stop, seen), daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=1800)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    report = json.loads(out)
    chunks = report["chunks_new"]
    cpu = sum(c for c, _ in seen.values())
    by_kind: dict[str, float] = {}
    count: dict[str, int] = {}
    for c, kind in seen.values():
        by_kind[kind] = by_kind.get(kind, 0.0) + c
        count[kind] = count.get(kind, 0) + 1
    return {
        "chunks": chunks,
        "report_s": report["seconds"],
        "report_chunks_per_s": report["chunks_per_s"],
        "wall_s": round(wall, 2),
        "wall_chunks_per_s": round(chunks / wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_s_per_chunk": round(cpu / chunks, 4) if chunks else None,
        "cpu_s_by_process": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "processes": len(seen),
        "processes_by_kind": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=80, help="first N pages of the corpus (sorted paths)")
    parser.add_argument("--ray", nargs="*", default=["1x2:64", "2x1:64", "2x1:16", "2x1:256"])
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest_ray.json")
    args = parser.parse_args()
    pages = sorted(p for p in CORPUS.rglob("*.md"))[: args.pages]
    docs = Path(tempfile.mkdtemp(prefix="ingest-bench-docs-"))
    for p in pages:
        (docs / p.relative_to(CORPUS)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, docs / p.relative_to(CORPUS))
    load_before = os.getloadavg()
    rows = [{"variant": "local (one process)", **run(docs, [], {})}]
    print(json.dumps(rows[-1]), flush=True)
    for spec in args.ray:
        shape, batch = spec.split(":")
        actors, cpus = shape.split("x")
        env = {
            "RAGSERVE__INGEST__RAY__EMBED_ACTORS": actors,
            "RAGSERVE__INGEST__RAY__NUM_CPUS_PER_ACTOR": cpus,
            "RAGSERVE__INGEST__RAY__EMBED_BATCH_SIZE": batch,
        }
        rows.append(
            {"variant": f"--ray {actors} actor(s) x {cpus} CPU, batch {batch}", **run(docs, ["--ray"], env)}
        )
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(docs, ignore_errors=True)
    local = rows[0]["report_chunks_per_s"]
    for r in rows:
        r["vs_local"] = round(r["report_chunks_per_s"] / local, 2)
        r["wall_vs_local"] = round(r["wall_chunks_per_s"] / rows[0]["wall_chunks_per_s"], 2)
    result = {
        "machine": machine(),
        "pages": len(pages),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["load-tests/ingest_ray_bench.py", *sys.argv[1:]]),
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| variant | chunks | chunks/s (report) | x local | chunks/s (wall) | CPU s/chunk |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['chunks']} | {r['report_chunks_per_s']} | {r['vs_local']} | "
            f"{r['wall_chunks_per_s']} | {r['cpu_s_per_chunk']} |"
        )


if __name__ == "__main__":
    main()
