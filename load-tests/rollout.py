"""Rollout and router crash under a steady load of mixed ``/v1/query`` and ``/v1/search``.

How. A private cluster the way ``inplace_update.py`` builds one (fresh RAGSERVE_HOME with a few corpus pages
ingested, ``ray start --head`` on free ports, the YAML of ``ragserve serve-config`` sent with ``serve deploy``
through the dashboard), with the Router at exactly 2 replicas (``deployments[Router]`` min = max = 2). An
open-loop Poisson load (arrivals do not wait for responses; latency counts from the scheduled start) runs
``--query-rate`` queries/s (``sampling.max_tokens`` = ``--max-tokens``) and ``--search-rate`` searches/s
through every phase:

  baseline  ``--baseline-s`` seconds of load alone.
  args      an ``args`` change (``args.ingest.write_group_chunks`` += 1, read by ingestion only): Serve
            hashes ``args`` into the app's code version, so every replica of every deployment is replaced.
            The window runs from the deploy call until the app is RUNNING with all replicas settled.
  scaling   ``deployments[Embedder].autoscaling_config.max_replicas`` += 1 only: applied in place, actor ids
            before and after are compared.
  crash     SIGKILL to one Router replica's worker process. Requests in flight on it may fail; the window
            runs from the kill until the Router has 2 RUNNING replicas again, and failures are split into
            those in flight at the kill and those sent after it.

Each window reports requests sent, failed (HTTP status other than 200, or a transport error), p50/p99 of the
successful ones and the seconds until all replicas were RUNNING. Run (about 10 min on 2 cores, most of it
two vLLM starts)::

    .venv/bin/python load-tests/rollout.py [--query-rate 1] [--search-rate 2] [--baseline-s 30]

Writes load-tests/results/rollout.json and prints the tables (copied into RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import CORPUS, machine
from inplace_update import (
    RESULTS,
    Cluster,
    RestPath,
    app_entry,
    foreign_ray_processes,
    git_head,
    log,
    private_env,
    serve_config,
    snapshot,
    wait_settled,
)
from loadgen import questions

ROUTER, EMBEDDER = "Router", "Embedder"
PAGES = [  # a few pages of the Milvus docs: enough for real retrieval, quick to ingest
    "reference/index.md",
    "reference/metric.md",
    "reference/consistency.md",
    "about/limitations.md",
]


def reason(res: httpx.Response) -> str:
    """The error's message (the API's {"error": {"type", "message"}}), trimmed, so the JSON says why."""
    try:
        error = res.json().get("error", {})
        return f"{error.get('type', '')}: {str(error.get('message', ''))[:100]}"
    except ValueError:
        return res.text[:100]


@dataclass
class Record:
    kind: str
    start: float  # scheduled start, time.monotonic()
    end: float | None = None
    error: str | None = None  # None: HTTP 200


class Load:
    """Open-loop Poisson arrivals per kind on a background event loop; every request becomes a Record."""

    def __init__(self, url: str, rates: dict[str, float], max_tokens: int, seed: int = 7):
        self.url, self.rates, self.max_tokens = url, rates, max_tokens
        self.records: list[Record] = []
        self.qs = questions()
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)

    async def _one(self, client: httpx.AsyncClient, rec: Record, i: int) -> None:
        q = self.qs[i % len(self.qs)]
        if rec.kind == "query":
            body: dict[str, Any] = {"question": q, "top_k": 3, "sampling": {"max_tokens": self.max_tokens}}
        else:
            body = {"query": q, "top_k": 5}
        try:
            res = await client.post(f"/v1/{rec.kind}", json=body)
            rec.error = None if res.status_code == 200 else f"{res.status_code} {reason(res)}"
        except httpx.HTTPError as err:
            rec.error = type(err).__name__
        rec.end = time.monotonic()

    async def _arrivals(self, client: httpx.AsyncClient, kind: str, rate: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        next_at, i = time.monotonic(), 0
        while not self._stop.is_set():
            next_at += self.rng.expovariate(rate)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            rec = Record(kind, next_at)
            self.records.append(rec)
            task = asyncio.create_task(self._one(client, rec, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=90)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            await asyncio.gather(*(self._arrivals(client, k, r) for k, r in self.rates.items() if r > 0))


def private_cluster(prefix: str) -> Cluster:
    """A not yet started cluster with a fresh home holding a few ingested corpus pages."""
    foreign = foreign_ray_processes()
    if foreign:
        log(f"another Ray runs here ({', '.join(foreign)}): left alone (own ports, temp dir, stop by pid)")
    home = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = Cluster(home, private_env(home))
    docs = home / "docs"
    for rel in PAGES:
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, docs / rel)
    ingest = [sys.executable, "-m", "ragserve.cli", "ingest", str(docs)]
    subprocess.run(ingest, env=cluster.env, check=True, timeout=600)
    return cluster


def deploy_app(
    cluster: Cluster, num_cpus: int, timeout: float, router_replicas: int | None = None
) -> tuple[RestPath, dict[str, Any], float]:
    """Start the cluster and ``serve deploy`` the local profile's serve-config (the Router pinned at
    ``router_replicas``); returns the deploy path, the deployed document and the seconds to RUNNING."""
    doc = serve_config(cluster.env, None)
    doc["http_options"] = {"host": "127.0.0.1", "port": cluster.http_port}
    if router_replicas is not None:
        router = next(d for d in app_entry(doc)["deployments"] if d["name"] == ROUTER)
        router["autoscaling_config"].update(min_replicas=router_replicas, max_replicas=router_replicas)
    cluster.start(num_cpus)
    path = RestPath(cluster)
    if not path.ready(120):
        raise RuntimeError(f"dashboard {cluster.dashboard} not answering")
    t0 = time.monotonic()
    path.deploy(doc)
    _, first = wait_settled(path, 0.0, t0, timeout, "initial deploy")
    return path, doc, first


def window(records: list[Record], t0: float, t1: float) -> dict[str, Any]:
    """Requests scheduled in [t0, t1): sent, failed (errors by kind), latency of the successful ones."""
    sent = [r for r in records if t0 <= r.start < t1 and r.end is not None]
    ok = np.array([r.end - r.start for r in sent if r.error is None and r.end is not None])
    failed = [r for r in sent if r.error is not None]
    errors: dict[str, int] = {}
    for r in failed:
        errors[f"{r.kind} {r.error}"] = errors.get(f"{r.kind} {r.error}", 0) + 1

    def pct(kind: str, q: float) -> float | None:
        lat = [r.end - r.start for r in sent if r.kind == kind and r.error is None and r.end is not None]
        return round(float(np.percentile(lat, q)) * 1000, 1) if lat else None

    return {
        "seconds": round(t1 - t0, 1),
        "sent": len(sent),
        "failed": len(failed),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 1) if len(ok) else None,
        "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 1) if len(ok) else None,
        "p99_ms_by_kind": {k: pct(k, 99) for k in ("query", "search")},
    }


def actor_ids(path: RestPath) -> dict[str, list[str]]:
    snap = snapshot(path)
    return {name: snap.actor_ids(name) for name in snap.deployments}


def deploy_phase(
    name: str, path: RestPath, doc: dict[str, Any], load: Load, timeout: float, settle_s: float
) -> dict[str, Any]:
    before = snapshot(path)
    ids_before = {n: before.actor_ids(n) for n in before.deployments}
    t0 = time.monotonic()
    path.deploy(doc)
    after, running_s = wait_settled(path, before.last_deployed_time_s, t0, timeout, name)
    t1 = t0 + running_s
    time.sleep(settle_s)
    ids_after = {n: after.actor_ids(n) for n in after.deployments}
    return {
        "phase": name,
        "seconds_to_running": round(running_s, 1),
        "during": window(load.records, t0, t1),
        "after": window(load.records, t1, time.monotonic()),
        "replicas_replaced": {
            n: f"{len(set(ids_before.get(n, [])) - set(ids_after[n]))}/{len(ids_before.get(n, []))}"
            for n in ids_after
        },
        "actor_ids_before": ids_before,
        "actor_ids_after": ids_after,
    }


def crash_phase(path: RestPath, load: Load, timeout: float, settle_s: float) -> dict[str, Any]:
    before = snapshot(path)
    replicas = before.deployments[ROUTER]["replicas"]
    victim = next(r for r in replicas if r["pid"])
    log(f"crash: SIGKILL router replica {victim['replica_id']} (pid {victim['pid']})")
    t_kill = time.monotonic()
    os.kill(int(victim["pid"]), signal.SIGKILL)
    back_s = None
    deadline = t_kill + timeout
    while time.monotonic() < deadline:
        try:
            snap = snapshot(path)
        except (OSError, ValueError) as err:
            log(f"crash: details not available ({type(err).__name__})")
            time.sleep(1)
            continue
        running = [r for r in snap.deployments[ROUTER]["replicas"] if r["state"] == "RUNNING"]
        if len(running) == len(replicas) and victim["actor_id"] not in {r["actor_id"] for r in running}:
            back_s = time.monotonic() - t_kill
            break
        time.sleep(1)
    t_back = time.monotonic()
    time.sleep(settle_s)
    recs = load.records
    in_flight = [r for r in recs if r.start < t_kill and (r.end is None or r.end > t_kill)]
    new = window(recs, t_kill, t_back)
    return {
        "phase": "crash",
        "victim": {"replica_id": victim["replica_id"], "pid": victim["pid"]},
        "seconds_until_back": None if back_s is None else round(back_s, 1),
        "in_flight_at_kill": len(in_flight),
        "in_flight_failed": sum(1 for r in in_flight if r.error is not None),
        "during": new,  # requests sent after the kill, until the replica was back
        "after": window(recs, t_back, time.monotonic()),
        "new_failed_pct": round(100 * new["failed"] / new["sent"], 2) if new["sent"] else None,
    }


def row(label: str, w: dict[str, Any], recovered: Any = "") -> str:
    cells = (label, w["seconds"], w["sent"], w["failed"], w["p50_ms"], w["p99_ms"], recovered)
    return "| " + " | ".join(str(c) for c in cells) + " |"


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nload: {report['load']}; machine: {report['machine']}")
    print("| window | seconds | sent | failed | p50 ms | p99 ms | recovered after s |")
    print("|---|---|---|---|---|---|---|")
    print(row("baseline", report["baseline"], "-"))
    for ph in report["phases"]:
        recovered = ph.get("seconds_to_running", ph.get("seconds_until_back"))
        print(row(f"{ph['phase']}: during", ph["during"], recovered))
        print(row(f"{ph['phase']}: after", ph["after"]))
    for ph in report["phases"]:
        if "replicas_replaced" in ph:
            print(
                f"{ph['phase']}: replicas replaced {ph['replicas_replaced']}; errors {ph['during']['errors']}"
            )
        else:
            print(
                f"crash: in flight at the kill {ph['in_flight_at_kill']}, of them failed "
                f"{ph['in_flight_failed']}; sent after the kill until back {ph['during']['sent']}, failed "
                f"{ph['during']['failed']} ({ph['new_failed_pct']} %); errors {ph['during']['errors']}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--query-rate", type=float, default=1.0, help="POST /v1/query per second")
    parser.add_argument("--search-rate", type=float, default=2.0, help="POST /v1/search per second")
    parser.add_argument("--max-tokens", type=int, default=8, help="sampling.max_tokens of each query")
    parser.add_argument("--baseline-s", type=float, default=30)
    parser.add_argument("--settle-s", type=float, default=15, help="load after each phase, before the next")
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs of the Ray head")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each phase may take to recover")
    parser.add_argument("--keep", action="store_true", help="leave Ray running (and its temporary home)")
    parser.add_argument("--out", type=Path, default=RESULTS / "rollout.json")
    opts = parser.parse_args()

    started = time.monotonic()
    cluster = private_cluster("ragserve-rollout-")
    report: dict[str, Any] = {"git_head": git_head(), "machine": machine(), "phases": []}
    load: Load | None = None
    try:
        path, doc, first = deploy_app(cluster, opts.num_cpus, opts.timeout, router_replicas=2)
        report["initial_seconds_to_running"] = round(first, 1)

        rates = {"query": opts.query_rate, "search": opts.search_rate}
        report["load"] = f"open loop, Poisson: {rates} req/s, query max_tokens {opts.max_tokens}"
        load = Load(f"http://127.0.0.1:{cluster.http_port}", rates, opts.max_tokens)
        log(f"load: {report['load']}")
        load.start()
        t_base = time.monotonic()
        time.sleep(opts.baseline_s)
        report["baseline"] = window(load.records, t_base, time.monotonic())
        log(f"baseline: {report['baseline']}")

        changed = copy.deepcopy(doc)
        ingest = app_entry(changed)["args"]["ingest"]
        ingest["write_group_chunks"] = int(ingest["write_group_chunks"]) + 1
        log("args: args.ingest.write_group_chunks += 1 (new code version: every replica replaced)")
        report["phases"].append(deploy_phase("args", path, changed, load, opts.timeout, opts.settle_s))
        doc = changed

        changed = copy.deepcopy(doc)
        emb = next(d for d in app_entry(changed)["deployments"] if d["name"] == EMBEDDER)
        emb["autoscaling_config"]["max_replicas"] = int(emb["autoscaling_config"]["max_replicas"]) + 1
        log("scaling: deployments[Embedder].autoscaling_config.max_replicas += 1 (in place)")
        report["phases"].append(deploy_phase("scaling", path, changed, load, opts.timeout, opts.settle_s))

        report["phases"].append(crash_phase(path, load, opts.timeout, opts.settle_s))
    finally:
        if load is not None:
            load.stop()
        report["total_s"] = round(time.monotonic() - started, 1)
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {opts.out} (total {report['total_s']} s)")
        if opts.keep:
            log(f"--keep: Ray left running (dashboard {cluster.dashboard}), home {cluster.home}")
        else:
            cluster.stop()
            shutil.rmtree(cluster.home, ignore_errors=True)
    if report.get("baseline") and report["phases"]:
        print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
