"""Soak: a steady load at half the saturation rate for ``--minutes``; RSS, open fds and p99 every minute.

The app is the one ``rollout.py`` deploys (local profile, ``serve deploy`` on a private Ray head, a few corpus
pages ingested) and the load is its open-loop Poisson mix. Default rates: 0.75 queries/s and 5 searches/s,
each about a quarter of its own saturation rate on 2 cores (query about 3 req/s, search about 21 req/s:
RESULTS.md, "Load curve"), so the mix keeps the box about half busy.

Every ``--interval-s`` it records, per process of the cluster (Ray daemons, Serve controller and proxy, each
replica, vLLM's EngineCore and worker): RSS and open file descriptors; and the p50/p99 and failures of the
requests sent in that interval. RSS growth is measured from the end of the warm-up (``--warmup-min``) to the
end, for the sum over processes and per process. Writes load-tests/results/soak.json and soak.png (RSS per
process and p99 against time). ``make soak`` runs the full 30 minutes (not in CI)::

    .venv/bin/python load-tests/soak.py [--minutes 30] [--warmup-min 5] [--query-rate 0.75] [--search-rate 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from harness import machine
from inplace_update import RESULTS, Cluster, git_head, log
from rollout import Load, deploy_app, private_cluster, window


def label(p: psutil.Process) -> str:
    """A stable name per process: Serve replicas by deployment, vLLM by role, Ray daemons by name."""
    cmd = " ".join(p.cmdline())
    for key in ("ServeController", "ProxyActor", "EngineCore", "VLLM::Worker"):
        if key in cmd:
            return key
    if "ServeReplica:" in cmd:
        # Ray retitles a busy replica with its method ("...:Router.handle_request"): keep the deployment.
        return cmd.split("ServeReplica:", 1)[1].split()[0].replace("ragserve:", "").split(".")[0]
    name = p.name()
    return name if name not in ("python", "python3") else cmd.split()[-1][-40:]


def sample(cluster: Cluster) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in cluster.processes():
        try:
            key = f"{label(p)} [{p.pid}]"
            out[key] = {"rss_mib": round(p.memory_info().rss / 2**20, 1), "fds": p.num_fds()}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def growth(samples: list[dict[str, Any]], warmup_min: float) -> dict[str, Any]:
    """RSS at the first sample after warm-up vs the last one: total and per process (same pid)."""
    after = [s for s in samples if s["minute"] >= warmup_min]
    if len(after) < 2:
        return {"note": "no sample after the warm-up"}
    first, last = after[0], after[-1]

    def total(s: dict[str, Any]) -> float:
        return float(sum(v["rss_mib"] for v in s["processes"].values()))

    per = {
        k: round(100 * (last["processes"][k]["rss_mib"] / v["rss_mib"] - 1), 2)
        for k, v in first["processes"].items()
        if k in last["processes"] and v["rss_mib"] > 0
    }
    return {
        "from_minute": first["minute"],
        "to_minute": last["minute"],
        "total_rss_mib": [round(total(first), 1), round(total(last), 1)],
        "total_growth_pct": round(100 * (total(last) / total(first) - 1), 2),
        "per_process_growth_pct": dict(sorted(per.items(), key=lambda kv: -kv[1])),
        "processes_gone": sorted(set(first["processes"]) - set(last["processes"])),
        "processes_new": sorted(set(last["processes"]) - set(first["processes"])),
        "fds": [
            sum(v["fds"] for v in first["processes"].values()),
            sum(v["fds"] for v in last["processes"].values()),
        ],
    }


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no PNG")
        return
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    minutes = [s["minute"] for s in samples]
    names = sorted({k for s in samples for k in s["processes"]})
    biggest = sorted(names, key=lambda k: -max(s["processes"].get(k, {}).get("rss_mib", 0) for s in samples))
    for k in biggest[:10]:
        ax1.plot(minutes, [s["processes"].get(k, {}).get("rss_mib") for s in samples], marker=".", label=k)
    ax1.set_ylabel("RSS MiB (10 largest processes)")
    ax1.legend(fontsize=7, loc="upper left")
    ax2.plot(minutes, [s["window"]["p99_ms"] for s in samples], marker="o", label="p99 (all)")
    ax2.plot(minutes, [s["window"]["p50_ms"] for s in samples], marker=".", label="p50 (all)")
    ax2.set_ylabel("latency ms (requests sent in the minute)")
    ax2.set_xlabel("minute")
    ax2.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup-min", type=float, default=5, help="RSS growth is counted after this")
    parser.add_argument("--interval-s", type=float, default=60)
    parser.add_argument("--query-rate", type=float, default=0.75)
    parser.add_argument("--search-rate", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--num-cpus", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    opts = parser.parse_args()

    cluster = private_cluster("ragserve-soak-")
    rates = {"query": opts.query_rate, "search": opts.search_rate}
    report: dict[str, Any] = {
        "git_head": git_head(),
        "machine": machine(),
        "load": f"open loop, Poisson: {rates} req/s, query max_tokens {opts.max_tokens}",
        "minutes": opts.minutes,
        "warmup_min": opts.warmup_min,
        "samples": [],
    }
    load: Load | None = None
    start = time.monotonic()
    try:
        deploy_app(cluster, opts.num_cpus, 900)
        load = Load(f"http://127.0.0.1:{cluster.http_port}", rates, opts.max_tokens)
        log(f"soak: {report['load']} for {opts.minutes} min")
        start = time.monotonic()
        load.start()
        n = 0
        while time.monotonic() - start < opts.minutes * 60:
            n += 1
            time.sleep(max(0.0, start + n * opts.interval_s - time.monotonic()))
            # Requests sent in the last interval, shifted back 30 s so that their answers have landed.
            w = window(load.records, start + (n - 1) * opts.interval_s - 30, time.monotonic() - 30)
            minute = round((time.monotonic() - start) / 60, 2)
            procs = sample(cluster)
            report["samples"].append({"minute": minute, "window": w, "processes": procs})
            total = sum(v["rss_mib"] for v in procs.values())
            fds = sum(v["fds"] for v in procs.values())
            log(
                f"minute {minute}: sent {w['sent']} failed {w['failed']} p99 {w['p99_ms']} ms; "
                f"{len(procs)} processes, RSS {total:.0f} MiB, fds {fds}"
            )
    finally:
        if load is not None:
            load.stop()
        report["rss_growth"] = growth(report["samples"], opts.warmup_min)
        report["whole_run"] = window(load.records, start, time.monotonic()) if load else None
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(report, indent=2) + "\n")
        plot(report["samples"], opts.out.with_suffix(".png"), f"soak: {report['load']}; {report['machine']}")
        log(f"wrote {opts.out}; RSS growth after warm-up: {report['rss_growth']}")
        cluster.stop()
        shutil.rmtree(cluster.home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
