"""Traces: Ray Serve's own tracing (one span per HTTP request at the proxy and per handle call in each
replica, the context carried across handle calls) exporting over OTLP/HTTP, plus ragserve's stage spans.

Serve calls ``otlp_span_processors`` in every proxy and replica process when the Serve config's
``tracing_config`` names it (``ragserve.app.serve_config``, the chart's serveConfigV2); the endpoint comes
from ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (``observability.tracing.endpoint``, set for replicas by
``environment.process_env`` and for the pods by the chart). Without a tracer provider (tracing off, the
CLI) the stage spans are no-ops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

EXPORTER_IMPORT_PATH = "ragserve.observability.tracing:otlp_span_processors"


def otlp_span_processors() -> list[Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [_ProcessAttributes(), BatchSpanProcessor(OTLPSpanExporter())]


def _process_role() -> str:
    """The Serve deployment this process serves (Router, Embedder, ...), or the proxy."""
    try:
        from ray import serve

        return str(serve.get_replica_context().deployment)
    except Exception:  # outside a replica: the HTTP proxy
        return "proxy"


class _ProcessAttributes(SpanProcessor):
    """Marks every span with the process that recorded it (Serve's tracer provider has no resource)."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        span.set_attribute("ragserve.process", _process_role())


@contextmanager
def stage(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current request's span (a no-op span when no tracer provider is set)."""
    with trace.get_tracer("ragserve").start_as_current_span(name, attributes=attributes or None) as span:
        yield span
