"""Generate the chart's Grafana dashboards, deploy/helm/ragserve/dashboards/*.json (tests/deploy fails when
they drift). The panels are defined here, compactly, so every query follows the same rules:

- metric names are the ones Prometheus stores after the PodMonitor's metricRelabelings (`ragserve_*`,
  `vllm:*`; Ray Serve's `ray_serve_*` unchanged) or NVIDIA's DCGM exporter emits (`DCGM_FI_DEV_*`);
- every selector filters on `namespace=~"$namespace"`, and on `deployment=~"$deployment"` where the series
  carries Ray Serve's deployment label (ragserve_* and the replica/handle/controller ray_serve_* series;
  not the Serve proxy's, vLLM's or DCGM's);
- the only Grafana variables in queries are $namespace, $deployment and $__rate_interval.

    .venv/bin/python deploy/scripts/gen_dashboards.py          # rewrite the files
    .venv/bin/python deploy/scripts/gen_dashboards.py --check  # exit 1 if any is stale
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generated import write_or_check

CHART = Path(__file__).resolve().parents[1] / "helm" / "ragserve"
OUT = CHART / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
NSD = 'namespace=~"$namespace", deployment=~"$deployment"'
RI = "$__rate_interval"
QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))


@dataclass
class Panel:
    title: str
    description: str
    targets: list[tuple[str, str]]  # (expr, legendFormat)
    unit: str = "short"
    width: int = 12
    extra_defaults: dict[str, Any] = field(default_factory=dict)


def rate(metric: str, selector: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{selector}}}[{RI}]))"


def quantile(q: str, metric: str, selector: str, by: str = "") -> str:
    by = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, {rate(metric + '_bucket', selector, by)})"


def quantiles(metric: str, selector: str, by: str = "", legend: str = "") -> list[tuple[str, str]]:
    return [(quantile(q, metric, selector, by), f"{name}{legend}") for name, q in QUANTILES]


def status_ratio(cls: str) -> str:
    """Share of responses with status class `cls` (4/5) per route; 0 (not missing) on routes without any."""
    errors = rate("ragserve_requests_total", f'{NSD}, status=~"{cls}.."', "route")
    total = rate("ragserve_requests_total", NSD, "route")
    return f"({errors} or 0 * {total}) / {total}"


HEALTHY = Panel(
    "Healthy replicas per deployment",
    "Serve replicas passing health checks (ray_serve_deployment_replica_healthy, one series per replica).",
    [("sum by (deployment) (ray_serve_deployment_replica_healthy{" + NSD + "})", "{{deployment}}")],
)

OVERVIEW = [
    Panel(
        "Requests per second by route and status",
        "HTTP requests answered by the router, per API route template and status code "
        "(ragserve_requests_total; 401/413/429 rejected by the guard are counted too).",
        [(rate("ragserve_requests_total", NSD, "route, status"), "{{route}} {{status}}")],
        "reqps",
    ),
    Panel(
        "Error ratio by route (5xx, 4xx)",
        "Share of responses per route with a 5xx status (server errors and 503 shedding) and with a 4xx "
        "status (bad input, auth, 429 rate limiting).",
        [(status_ratio("5"), "5xx {{route}}"), (status_ratio("4"), "4xx {{route}}")],
        "percentunit",
    ),
    *[
        Panel(
            f"Stage latency {name} by stage",
            f"{name} seconds per request stage (ragserve_stage_latency_seconds): embed, search, rerank, "
            "prompt, generate, and total (the whole HTTP request, streamed responses until their last "
            "byte), all routes together.",
            [(quantile(q, "ragserve_stage_latency_seconds", NSD, "stage"), "{{stage}}")],
            "s",
            width=8,
        )
        for name, q in QUANTILES
    ],
    Panel(
        "Request latency p99 by route",
        "p99 of the whole HTTP request (stage total) per API route; the alert RagserveLatencySLOBreach "
        "watches the same quantile.",
        [(quantile("0.99", "ragserve_stage_latency_seconds", NSD + ', stage="total"', "route"), "{{route}}")],
        "s",
    ),
    Panel(
        "Time to first token (p50, p95, p99)",
        "Seconds from the start of a RAG request (retrieval included) to its first generated token "
        "(ragserve_ttft_seconds).",
        quantiles("ragserve_ttft_seconds", NSD),
        "s",
    ),
    Panel(
        "Framework overhead vs engine time (p50)",
        "Per RAG request, what vLLM itself accounts for (ragserve_engine_seconds, from its per-request "
        "stats) and what ragserve adds around it (ragserve_framework_overhead_seconds: our measured "
        "generate TTFT / generate time minus the engine's: handle hops, replica queueing, serialisation, "
        "coalescing), for the first token and the whole generation.",
        [
            (quantile("0.5", "ragserve_engine_seconds", NSD, "phase"), "engine {{phase}}"),
            (quantile("0.5", "ragserve_framework_overhead_seconds", NSD, "phase"), "framework {{phase}}"),
        ],
        "s",
    ),
    Panel(
        "Tokens per second (in = prompt, out = generated)",
        "Prompt and generated tokens of RAG answers (ragserve_tokens_total by direction).",
        [(rate("ragserve_tokens_total", NSD, "direction"), "{{direction}}")],
        "short",
    ),
    Panel(
        "Retrieved chunks per request",
        "Chunks retrieved from Milvus per request (ragserve_retrieved_chunks): median and mean.",
        [
            (quantile("0.5", "ragserve_retrieved_chunks", NSD), "p50"),
            (
                rate("ragserve_retrieved_chunks_sum", NSD)
                + " / "
                + rate("ragserve_retrieved_chunks_count", NSD),
                "mean",
            ),
        ],
    ),
    Panel(
        "Abstentions (questions the documents do not cover)",
        "Questions answered 'not covered by the documents' without calling the generator, because the best "
        "chunk's similarity was below retrieval.min_relevance (ragserve_abstentions_total), per second and "
        "as a share of RAG requests.",
        [
            (rate("ragserve_abstentions_total", NSD), "abstained/s"),
            (
                rate("ragserve_abstentions_total", NSD)
                + " / "
                + rate("ragserve_requests_total", NSD + ', route=~"/v1/(query|chat/completions)"'),
                "share of RAG requests",
            ),
        ],
    ),
    Panel(
        "Ingestion (documents and chunks per second)",
        "Documents written to the store and chunks embedded and written "
        "(ragserve_ingested_documents_total, ragserve_ingested_chunks_total).",
        [
            (rate("ragserve_ingested_documents_total", NSD), "documents"),
            (rate("ragserve_ingested_chunks_total", NSD), "chunks"),
        ],
    ),
    Panel(
        "Embedder batch size (p50, p95)",
        "Queries per forward pass of the embedder's dynamic batches (ragserve_embedder_batch_size); "
        "persistently at the configured max_batch_size means the pool is saturated.",
        [(quantile(q, "ragserve_embedder_batch_size", NSD), name) for name, q in QUANTILES[:2]],
    ),
    HEALTHY,
]

SERVE = [
    HEALTHY,
    Panel(
        "Reranker: rerank stage latency (p50, p95, p99)",
        "Seconds the optional cross-encoder takes to score a request's candidates, as the router sees it "
        '(ragserve_stage_latency_seconds{stage="rerank"}; only with reranker.enabled).',
        quantiles("ragserve_stage_latency_seconds", NSD + ', stage="rerank"'),
        "s",
    ),
    Panel(
        "Reranker: pairs per forward pass (p50, p95)",
        "(question, chunk) pairs the reranker scores per dynamic batch (ragserve_reranker_batch_pairs): "
        "about retrieval.candidates x the requests batched together; the panels here show its replicas "
        "(deployment Reranker) and queue.",
        [(quantile(q, "ragserve_reranker_batch_pairs", NSD), name) for name, q in QUANTILES[:2]],
    ),
    Panel(
        "Autoscaling: target and desired replicas",
        "The replica count the Serve controller is driving towards (ray_serve_autoscaling_target_replicas) "
        "and the autoscaling policy's raw decision before min/max bounds "
        "(ray_serve_autoscaling_desired_replicas); compare with the healthy replicas.",
        [
            (
                "sum by (deployment) (ray_serve_autoscaling_target_replicas{" + NSD + "})",
                "{{deployment}} target",
            ),
            (
                "sum by (deployment) (ray_serve_autoscaling_desired_replicas{" + NSD + "})",
                "{{deployment}} desired",
            ),
        ],
    ),
    Panel(
        "Requests processing per replica",
        "Requests a replica is executing right now (ray_serve_replica_processing_queries); compare with the "
        "deployment's max_ongoing_requests and target_ongoing_requests.",
        [
            (
                "sum by (deployment, replica) (ray_serve_replica_processing_queries{" + NSD + "})",
                "{{deployment}} {{replica}}",
            )
        ],
    ),
    Panel(
        "Requests queued at handles",
        "Requests waiting in callers' handles for a replica of the deployment "
        "(ray_serve_deployment_queued_queries, summed over handles); steady growth means too few replicas.",
        [("sum by (deployment) (ray_serve_deployment_queued_queries{" + NSD + "})", "{{deployment}}")],
    ),
    Panel(
        "Requests per second per deployment",
        "Requests processed by the deployment's replicas (ray_serve_deployment_request_counter_total).",
        [(rate("ray_serve_deployment_request_counter_total", NSD, "deployment"), "{{deployment}}")],
        "reqps",
    ),
    Panel(
        "Processing latency p95 per deployment",
        "p95 of the time replicas spend on a request (ray_serve_deployment_processing_latency_ms).",
        [
            (
                quantile("0.95", "ray_serve_deployment_processing_latency_ms", NSD, "deployment"),
                "{{deployment}}",
            )
        ],
        "ms",
    ),
    Panel(
        "Proxy HTTP requests per second by status",
        "Requests through the Serve HTTP proxies (ray_serve_num_http_requests_total; proxies carry no "
        "deployment label).",
        [
            (
                rate("ray_serve_num_http_requests_total", NS, "application, status_code"),
                "{{application}} {{status_code}}",
            )
        ],
        "reqps",
    ),
    Panel(
        "Proxy HTTP latency (p50, p95, p99)",
        "End-to-end latency measured at the Serve HTTP proxies (ray_serve_http_request_latency_ms).",
        quantiles("ray_serve_http_request_latency_ms", NS),
        "ms",
    ),
    Panel(
        "Ongoing HTTP requests at proxies",
        "Requests in flight in each node's Serve HTTP proxy (ray_serve_num_ongoing_http_requests).",
        [
            (
                "sum by (node_ip_address) (ray_serve_num_ongoing_http_requests{" + NS + "})",
                "{{node_ip_address}}",
            )
        ],
    ),
]

VLLM_BY = "model_name"
VLLM = [
    Panel(
        "Requests running and waiting",
        "Requests in vLLM's running batches (vllm:num_requests_running) and waiting for a slot or KV-cache "
        "blocks (vllm:num_requests_waiting), all engines of the namespace.",
        [
            (f"sum by ({VLLM_BY}) (vllm:num_requests_running{{{NS}}})", "running {{model_name}}"),
            (f"sum by ({VLLM_BY}) (vllm:num_requests_waiting{{{NS}}})", "waiting {{model_name}}"),
        ],
    ),
    Panel(
        "KV-cache usage per engine",
        "Fraction of the KV-cache blocks in use (vllm:kv_cache_usage_perc, 1 = full); near 1 with waiting "
        "requests means the engine is memory bound.",
        [
            (
                f"max by ({VLLM_BY}, ReplicaId) (vllm:kv_cache_usage_perc{{{NS}}})",
                "{{model_name}} {{ReplicaId}}",
            )
        ],
        "percentunit",
        extra_defaults={"max": 1},
    ),
    Panel(
        "Time to first token (p50, p95, p99)",
        "Engine-side time to first token (vllm:time_to_first_token_seconds); the RAG overview's TTFT adds "
        "retrieval.",
        quantiles("vllm:time_to_first_token_seconds", NS),
        "s",
    ),
    Panel(
        "Time per output token (p50, p95, p99)",
        "Mean decode time per generated token of each request (vllm:request_time_per_output_token_seconds).",
        quantiles("vllm:request_time_per_output_token_seconds", NS),
        "s",
    ),
    Panel(
        "Inter-token latency (p50, p95, p99)",
        "Time between consecutive generated tokens (vllm:inter_token_latency_seconds).",
        quantiles("vllm:inter_token_latency_seconds", NS),
        "s",
    ),
    Panel(
        "Token throughput",
        "Prompt tokens prefilled and tokens generated per second (vllm:prompt_tokens_total, "
        "vllm:generation_tokens_total).",
        [
            (rate("vllm:prompt_tokens_total", NS, VLLM_BY), "prompt {{model_name}}"),
            (rate("vllm:generation_tokens_total", NS, VLLM_BY), "generation {{model_name}}"),
        ],
    ),
    Panel(
        "Queue time and end-to-end latency p95",
        "p95 of the time requests wait in vLLM's queue (vllm:request_queue_time_seconds) and of the whole "
        "engine request (vllm:e2e_request_latency_seconds).",
        [
            (quantile("0.95", "vllm:request_queue_time_seconds", NS), "queue p95"),
            (quantile("0.95", "vllm:e2e_request_latency_seconds", NS), "end-to-end p95"),
        ],
        "s",
    ),
    Panel(
        "Serve: queued requests and healthy replicas",
        "In front of the engines: requests queued at Serve handles and healthy replicas per deployment "
        "(pick the generator deployment above).",
        [
            (
                "sum by (deployment) (ray_serve_deployment_queued_queries{" + NSD + "})",
                "queued {{deployment}}",
            ),
            (
                "sum by (deployment) (ray_serve_deployment_replica_healthy{" + NSD + "})",
                "replicas {{deployment}}",
            ),
        ],
    ),
]

GPU_BY = "Hostname, gpu, pod"
GPU_LEGEND = "{{pod}} gpu{{gpu}} ({{Hostname}})"


def gpu(metric: str, agg: str = "max") -> str:
    return f"{agg} by ({GPU_BY}) ({metric}{{{NS}}})"


FB_USED = gpu("DCGM_FI_DEV_FB_USED")
GPU = [
    Panel(
        "GPU utilization",
        "Share of time a kernel ran on the GPU (DCGM_FI_DEV_GPU_UTIL).",
        [(gpu("DCGM_FI_DEV_GPU_UTIL"), GPU_LEGEND)],
        "percent",
        extra_defaults={"max": 100},
    ),
    Panel(
        "Framebuffer used",
        "GPU memory in use (DCGM_FI_DEV_FB_USED, MiB); vLLM reserves gpu_memory_utilization of it at start.",
        [(FB_USED, GPU_LEGEND)],
        "mbytes",
    ),
    Panel(
        "Framebuffer used (% of total)",
        "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE).",
        [
            (
                f"{FB_USED} / ({FB_USED} + {gpu('DCGM_FI_DEV_FB_FREE')})",
                GPU_LEGEND,
            )
        ],
        "percentunit",
        extra_defaults={"max": 1},
    ),
    Panel(
        "Power draw",
        "Board power (DCGM_FI_DEV_POWER_USAGE, W).",
        [(gpu("DCGM_FI_DEV_POWER_USAGE"), GPU_LEGEND)],
        "watt",
    ),
    Panel(
        "GPU temperature",
        "GPU temperature (DCGM_FI_DEV_GPU_TEMP, degrees C).",
        [(gpu("DCGM_FI_DEV_GPU_TEMP"), GPU_LEGEND)],
        "celsius",
    ),
    Panel(
        "Memory copy utilization",
        "Share of time the memory controller was busy (DCGM_FI_DEV_MEM_COPY_UTIL); decoding is bandwidth "
        "bound.",
        [(gpu("DCGM_FI_DEV_MEM_COPY_UTIL"), GPU_LEGEND)],
        "percent",
        extra_defaults={"max": 100},
    ),
    Panel(
        "Serve replicas per deployment",
        "Healthy Serve replicas (pick the generator deployment above): one per GPU worker pod.",
        [("sum by (deployment) (ray_serve_deployment_replica_healthy{" + NSD + "})", "{{deployment}}")],
    ),
    Panel(
        "Generated tokens per second",
        "vLLM's generation throughput next to the GPUs that produce it (vllm:generation_tokens_total).",
        [(rate("vllm:generation_tokens_total", NS, VLLM_BY), "{{model_name}}")],
    ),
]


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    namespace_metric: str
    panels: list[Panel]
    deployment_metric: str = "ray_serve_deployment_replica_healthy"


DASHBOARDS = {
    "ragserve-overview": Dashboard(
        "ragserve-overview",
        "ragserve / RAG overview",
        "Requests, errors, per-stage latency, TTFT, tokens, retrieval, ingestion and embedder batching "
        "(ragserve_* metrics recorded in the Serve replicas).",
        "ragserve_requests_total",
        OVERVIEW,
    ),
    "ragserve-serve": Dashboard(
        "ragserve-serve",
        "ragserve / Ray Serve",
        "Ray Serve's own metrics for the ragserve application: replicas, autoscaling, queues, per-deployment "
        "throughput and latency, the HTTP proxies.",
        "ray_serve_deployment_replica_healthy",
        SERVE,
    ),
    "ragserve-vllm": Dashboard(
        "ragserve-vllm",
        "ragserve / vLLM",
        "vLLM engine metrics of the generator (vllm:*, exported through Ray and renamed by the PodMonitor).",
        "vllm:num_requests_running",
        VLLM,
    ),
    "ragserve-gpu": Dashboard(
        "ragserve-gpu",
        "ragserve / GPU (DCGM)",
        "GPU metrics from NVIDIA's DCGM exporter (default counters), for the pods of the selected namespace; "
        "needs dcgm-exporter with Kubernetes pod mapping and honorLabels.",
        "DCGM_FI_DEV_GPU_UTIL",
        GPU,
    ),
}


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def templating(d: Dashboard) -> dict[str, Any]:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "options": [],
                "refresh": 1,
                "regex": "",
                "hide": 0,
                "includeAll": False,
                "multi": False,
            },
            variable("namespace", "Namespace", f"label_values({d.namespace_metric}, namespace)"),
            variable(
                "deployment",
                "Serve deployment",
                f'label_values({d.deployment_metric}{{namespace=~"$namespace"}}, deployment)',
            ),
        ]
    }


def panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": p.unit,
                "min": 0,
                **p.extra_defaults,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {
                "datasource": DS,
                "editorMode": "code",
                "expr": expr,
                "legendFormat": legend,
                "range": True,
                "refId": chr(ord("A") + i),
            }
            for i, (expr, legend) in enumerate(p.targets)
        ],
    }


def build(d: Dashboard) -> dict[str, Any]:
    panels, x, y = [], 0, 0
    for i, p in enumerate(d.panels, start=1):
        if x + p.width > 24:
            x, y = 0, y + 8
        panels.append(panel_json(p, i, x, y))
        x += p.width
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["ragserve"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "ragserve",
                "type": "dashboards",
                "tags": ["ragserve"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": templating(d),
        "panels": panels,
    }


def outputs() -> dict[Path, str]:
    return {
        OUT / f"{name}.json": json.dumps(build(d), indent=2, ensure_ascii=False) + "\n"
        for name, d in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    return write_or_check(outputs(), argv, Path(__file__).name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
