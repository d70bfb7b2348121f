"""Shared set-up of the load-test scripts: a private ingested corpus and the app served on a local Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragserve_testkit import CORPUS, CRDS, EVAL, REPO, SHARED, free_port  # their one owner

RESULTS = Path(__file__).resolve().parent / "results"  # every script's JSON, logs and profiles
__all__ = [
    "CORPUS",
    "CRDS",
    "EVAL",
    "REPO",
    "RESULTS",
    "SHARED",
    "free_port",
    "ingest_private",
    "machine",
    "served_app",
]


def machine() -> str:
    """``2 CPUs x86_64, 24 GiB, no GPU``: recorded next to every figure."""
    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU"
    return f"{os.cpu_count()} CPUs {os.uname().machine}, {gib:.0f} GiB, {gpu}"


def ingest_private(corpus: Path) -> Path:
    """Ingest ``corpus`` into a fresh RAGSERVE_HOME (a subprocess, so the Milvus Lite file is released)."""
    home = Path(tempfile.mkdtemp(prefix="ragserve-load-"))
    env = {**os.environ, "RAGSERVE_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "ragserve.cli", "ingest", str(corpus)], env=env, check=True)
    return home


@contextmanager
def served_app(args: dict[str, Any], port: int) -> Iterator[str]:
    """``build_app(args)`` on a local Ray (8 logical CPUs); yields the base URL; shuts everything down."""
    import ray
    from ray import serve

    from ragserve.app import APP_NAME, build_app
    from ragserve.environment import start_local_ray

    start_local_ray(num_cpus=8, include_dashboard=False, log_to_driver=False)  # as `ragserve serve` does
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
