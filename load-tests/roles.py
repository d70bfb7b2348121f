"""CPU seconds per process role over a measured window, from /proc (psutil): where each request's CPU goes.

Roles come from Ray's process titles (``ray::ServeReplica:<app>:<Deployment>``, ``ray::ProxyActor``, ...);
a process without a title of its own (vLLM's EngineCore, the Milvus Lite server) takes its nearest titled
ancestor's role, so a replica's helpers count towards it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

ROLE_OF_TITLE = (  # first match wins
    ("ServeReplica:ragserve:Router", "router"),
    ("ServeReplica:ragserve:Embedder", "embedder"),
    ("ServeReplica:ragserve:Generator", "generator + engine core"),
    ("ServeReplica:ragserve:MilvusLite", "milvus"),
    ("ServeReplica:ragserve:Reranker", "reranker"),
    ("ProxyActor", "http proxy"),
    ("HAProxyManager", "http proxy"),
    ("haproxy", "http proxy"),  # the HAProxy process the manager starts (RAY_SERVE_ENABLE_HA_PROXY)
    ("ServeController", "serve controller"),
    ("milvus", "milvus"),
    ("vllm.entrypoints", "raw vllm server + engine core"),
)
RAY_SYSTEM = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "ray::IDLE")


def _title(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except (psutil.Error, OSError):
        return ""


def role_of(p: psutil.Process, driver_pid: int) -> str | None:
    """The role of ``p`` (or of its nearest ancestor with one); None for processes outside the run."""
    node: psutil.Process | None = p
    while node is not None:
        if node.pid == driver_pid:
            return "driver (client, in-process parts)"
        title = _title(node)
        for marker, role in ROLE_OF_TITLE:
            if marker in title:
                return role
        if any(marker in title for marker in RAY_SYSTEM):
            return "ray system"
        try:
            node = node.parent()
        except psutil.Error:
            return None
    return None


def _cpu_by_pid() -> dict[int, tuple[psutil.Process, float]]:
    out = {}
    for p in psutil.process_iter():
        try:
            t = p.cpu_times()
            out[p.pid] = (p, t.user + t.system + t.children_user + t.children_system)
        except (psutil.Error, OSError):
            continue
    return out


@contextmanager
def cpu_window() -> Iterator[dict[str, Any]]:
    """``with cpu_window() as w: ...`` then ``w["by_role"]``: CPU seconds each role used inside the block
    (processes born inside it count from zero; ones that died inside it are missed, and say so)."""
    driver = os.getpid()
    before = _cpu_by_pid()
    result: dict[str, Any] = {}
    yield result
    after = _cpu_by_pid()
    by_role: dict[str, float] = defaultdict(float)
    outside = 0.0
    for pid, (proc, total) in after.items():
        used = total - (before[pid][1] if pid in before else 0.0)
        role = role_of(proc, driver)
        if role is None:
            outside += used
        else:
            by_role[role] += used
    result["by_role"] = {k: round(v, 3) for k, v in sorted(by_role.items())}
    result["outside_s"] = round(outside, 3)  # everything else on the machine: a busy neighbour shows here
    result["processes_gone"] = len(set(before) - set(after))


def per_request(window: dict[str, Any], requests: int) -> dict[str, float]:
    """CPU milliseconds per request for each role and their total; the rest of the machine's processes
    beside them (not in the total), so a row slowed by something else says so."""
    out = {role: round(1000 * s / requests, 2) for role, s in window["by_role"].items()}
    out["total"] = round(sum(window["by_role"].values()) * 1000 / requests, 2)
    out["outside the run (not in total)"] = round(1000 * window["outside_s"] / requests, 2)
    return out
