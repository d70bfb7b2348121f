"""ragserve's metrics, defined in one place (the names are a contract with the dashboards and alerts).

Where they go:
- inside a Ray Serve replica: ``ray.serve.metrics``. Ray's metrics agent on each node exports them on the
  node's metrics port with a ``ray_`` prefix and Serve's ``application`` / ``deployment`` / ``replica``
  labels; the chart's PodMonitor renames ``ray_ragserve_*`` back to ``ragserve_*``. Plain prometheus-client
  metrics created in a replica do *not* reach that port (they stay in the replica process's own registry,
  which nothing serves), hence this choice.
- anywhere else (the CLI's in-process pipeline and ingestion, a driver): prometheus-client's default
  registry.

Each metric is built lazily on first use in the process that records it, because Serve's labels are only
known inside a replica. Label values missing from a call are filled from ``current_route`` or "none".
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Sequence
from typing import Any

# The API route being served (set by the router's RequestMetrics middleware; read by the pipeline's stages).
current_route: contextvars.ContextVar[str] = contextvars.ContextVar("ragserve_route", default="none")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
COUNT_BUCKETS = (1, 2, 3, 5, 8, 10, 20, 50, 100)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def in_serve_replica() -> bool:
    serve = sys.modules.get("ray.serve")  # not imported: certainly not a replica (and the CLI stays light)
    if serve is None:
        return False
    try:
        serve.get_replica_context()
    except Exception:  # RayServeException outside a replica
        return False
    return True


class _Metric:
    kind = ""

    def __init__(
        self, name: str, description: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()
    ):
        self.name, self.description = name, description
        self.labels, self.buckets = tuple(labels), tuple(buckets)
        self._impl: Any = None
        self._ray = False
        self._lock = threading.Lock()

    def _backend(self) -> Any:
        if self._impl is None:
            with self._lock:
                if self._impl is None:
                    self._impl = self._build()
        return self._impl

    def _build(self) -> Any:
        if in_serve_replica():
            from ray.serve import metrics as serve_metrics

            self._ray = True
            cls = getattr(serve_metrics, self.kind)
            if self.kind == "Histogram":
                return cls(self.name, self.description, boundaries=list(self.buckets), tag_keys=self.labels)
            return cls(self.name, self.description, tag_keys=self.labels)
        import prometheus_client

        cls = getattr(prometheus_client, self.kind)
        if self.kind == "Histogram":
            return cls(self.name, self.description, self.labels, buckets=self.buckets)
        return cls(self.name, self.description, self.labels)

    def _tags(self, values: dict[str, str]) -> dict[str, str]:
        route = current_route.get()
        return {k: str(values.get(k, route if k == "route" else "none")) for k in self.labels}

    def _record(self, method: str, value: float, values: dict[str, str]) -> None:
        impl = self._backend()
        tags = self._tags(values)
        if self._ray:
            getattr(impl, "inc" if method == "inc" else "observe")(value, tags=tags)
        else:
            target = impl.labels(**tags) if tags else impl
            getattr(target, method)(value)


class Counter(_Metric):
    kind = "Counter"

    def inc(self, value: float = 1.0, **labels: str) -> None:
        if value > 0:
            self._record("inc", value, labels)


class Histogram(_Metric):
    kind = "Histogram"

    def observe(self, value: float, **labels: str) -> None:
        self._record("observe", value, labels)


# ---- the contract ------------------------------------------------------------------------------------------
REQUESTS = Counter(
    "ragserve_requests_total", "HTTP requests answered, by API route and status code", ("route", "status")
)
STAGE_LATENCY = Histogram(
    "ragserve_stage_latency_seconds",
    "Seconds spent per request stage: embed, search, rerank, prompt, generate, total (whole HTTP request)",
    ("stage", "route"),
    LATENCY_BUCKETS,
)
TTFT = Histogram(
    "ragserve_ttft_seconds",
    "Seconds from the start of a RAG request (retrieval included) to its first generated token",
    ("route",),
    LATENCY_BUCKETS,
)
TOKENS = Counter("ragserve_tokens_total", "Tokens: in = prompt, out = generated", ("direction", "route"))
RETRIEVED_CHUNKS = Histogram(
    "ragserve_retrieved_chunks", "Chunks retrieved from Milvus per request", ("route",), COUNT_BUCKETS
)
ABSTENTIONS = Counter(
    "ragserve_abstentions_total",
    "Questions answered 'not covered by the documents' without calling the generator (retrieval below "
    "retrieval.min_relevance, or below weak_relevance with a named term unexplained)",
    ("route",),
)
INSTRUCTIONS_REMOVED = Counter(
    "ragserve_context_instructions_removed_total",
    "Sentences addressing the model taken out of retrieved chunks before prompting "
    "(prompt.remove_instructions)",
)
ENGINE_SECONDS = Histogram(
    "ragserve_engine_seconds",
    "What vLLM itself accounts for per RAG request (its per-request stats): phase=ttft, its time to first "
    "token; phase=generate, its whole request time",
    ("phase", "route"),
    LATENCY_BUCKETS,
)
FRAMEWORK_OVERHEAD = Histogram(
    "ragserve_framework_overhead_seconds",
    "ragserve's measured generate TTFT / generate time minus the engine's own (handle hops, replica "
    "queueing, serialisation, coalescing), per RAG request",
    ("phase", "route"),
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
INGESTED_DOCUMENTS = Counter("ragserve_ingested_documents_total", "Documents (files) written to the store")
INGESTED_CHUNKS = Counter("ragserve_ingested_chunks_total", "Chunks embedded and written to the store")
EMBEDDER_BATCH_SIZE = Histogram(
    "ragserve_embedder_batch_size",
    "Queries per forward pass of the embedder's dynamic batches",
    (),
    BATCH_BUCKETS,
)
RERANKER_BATCH_PAIRS = Histogram(
    "ragserve_reranker_batch_pairs",
    "(question, chunk) pairs per forward pass of the reranker's dynamic batches",
    (),
    (1, 5, 10, 20, 50, 100, 200, 400, 800, 1600),
)


def observe_stages(timings_ms: dict[str, float], stages: Sequence[str]) -> None:
    """Record the ``<stage>_ms`` entries of a pipeline timings dict as stage latencies."""
    for stage in stages:
        if (ms := timings_ms.get(f"{stage}_ms")) is not None:
            STAGE_LATENCY.observe(ms / 1000, stage=stage)


def node_metrics_text(timeout_s: float = 5.0) -> str:
    """The exposition of this Ray node's metrics agent (all replicas and engines on this node)."""
    import urllib.request

    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode("utf-8"))
