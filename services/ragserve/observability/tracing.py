"""Traces: Ray Serve's own tracing (one span per HTTP request at the proxy and per handle call in each
replica, the context carried across handle calls) exporting over OTLP/HTTP, plus ragserve's stage spans.

Serve calls ``otlp_span_processors`` in every proxy and replica process when the Serve config's
``tracing_config`` names it (``ragserve.app.serve_config``, the chart's serveConfigV2); the endpoint comes
from ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (``observability.tracing.endpoint``, set for replicas by
``environment.process_env`` and for the pods by the chart). Without a tracer provider (tracing off, a CLI
command that did not start its own with ``start_cli_tracing``) the stage spans are no-ops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

if TYPE_CHECKING:
    from ragserve.config import AppConfig

EXPORTER_IMPORT_PATH = "ragserve.observability.tracing:otlp_span_processors"


def otlp_span_processors() -> list[Any]:
    """What Serve calls (it takes no arguments) in each proxy and replica."""
    return _processors("proxy")


def _processors(outside_replica: str) -> list[Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [_ProcessAttributes(outside_replica), BatchSpanProcessor(OTLPSpanExporter())]


def start_cli_tracing(cfg: AppConfig, command: str) -> Callable[[], None] | None:
    """Traces of a CLI command (ingestion: a span per file and per write group) when tracing is on;
    returns the flush-and-stop to call at exit. The endpoint comes from the environment
    (``environment.apply``)."""
    t = cfg.observability.tracing
    if not t.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    provider = TracerProvider(
        sampler=ParentBasedTraceIdRatio(t.sampling_ratio),
        resource=Resource.create({"service.name": "ragserve"}),
    )
    for processor in _processors(f"cli {command}"):
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _process_role(outside_replica: str) -> str:
    """The Serve deployment this process serves (Router, Embedder, ...), else ``outside_replica``."""
    try:
        from ray import serve

        return str(serve.get_replica_context().deployment)
    except Exception:  # outside a replica: the HTTP proxy, or a CLI command
        return outside_replica


class _ProcessAttributes(SpanProcessor):
    """Marks every span with the process that recorded it (Serve's tracer provider has no resource)."""

    def __init__(self, outside_replica: str):
        self.outside_replica = outside_replica
        self._role: str | None = None  # a process's role never changes: looked up at its first span

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self._role is None:
            self._role = _process_role(self.outside_replica)
        span.set_attribute("ragserve.process", self._role)


@contextmanager
def stage(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current request's span (a no-op span when no tracer provider is set)."""
    with trace.get_tracer("ragserve").start_as_current_span(name, attributes=attributes or None) as span:
        yield span
