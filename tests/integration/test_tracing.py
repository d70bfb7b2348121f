"""One trace per request across the router (which serves HTTP itself: Serve's direct ingress) and the
embedder, reranker and generator replicas, and one per `ragserve ingest`, exported over OTLP/HTTP to a real
receiver (tests/integration/otlp_receiver.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.integration.serving import QUESTION, Served, post

STAGES = {"embed", "milvus.search", "rerank", "prompt.build", "generate"}


def _find_trace(otlp: OtlpReceiver, since_ns: int, timeout_s: float = 45) -> list[ReceivedSpan]:
    """The trace of the one RAG request sent after ``since_ns``, once every process has exported it."""
    deadline = time.monotonic() + timeout_s
    spans: list[ReceivedSpan] = []
    while time.monotonic() < deadline:
        ids = {s.trace_id for s in otlp.spans if s.name == "prompt.build" and s.start_ns >= since_ns}
        if len(ids) == 1:
            spans = otlp.trace(ids.pop())
            processes = {s.attributes.get("ragserve.process") for s in spans}
            # complete only with the HTTP request's own span, the true root: the router ends it last, and its
            # exporter may send it a batch after the router's shorter spans
            has_root = any(not s.parent_span_id for s in spans)
            if has_root and {"Router", "Embedder", "Reranker", "Generator"} <= processes:
                return spans
        time.sleep(1)
    raise AssertionError(f"no complete trace within {timeout_s} s; last seen: {[s.name for s in spans]}")


@pytest.mark.vllm
@pytest.mark.slow
def test_a_query_is_one_trace_across_router_and_replicas(served: Served, otlp: OtlpReceiver) -> None:
    since = time.time_ns()
    res = post("/v1/query", {"question": QUESTION, "top_k": 2})
    assert res.status_code == 200, res.text
    spans = _find_trace(otlp, since)

    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if s.parent_span_id not in by_id]
    # the HTTP request: the router replica's own span (HAProxy in front of it makes none)
    assert len(roots) == 1 and roots[0].attributes["ragserve.process"] == "Router"
    assert roots[0].name == "replica_handle_request Router __call__"
    # every replica's span hangs off the router's: the context crossed each hop
    for s in spans:
        process = s.attributes.get("ragserve.process")
        if process in ("Embedder", "Reranker", "Generator") and s.parent_span_id in by_id:
            assert by_id[s.parent_span_id].attributes["ragserve.process"] in ("Router", process), s.name
    stages = {s.name: s for s in spans if s.name in STAGES}
    assert set(stages) == STAGES and all(
        s.attributes["ragserve.process"] == "Router" for s in stages.values()
    )
    assert "first_token" in stages["generate"].events
    # the stages nest in time inside the request's span
    assert all(roots[0].start_ns <= s.start_ns and s.end_ns <= roots[0].end_ns for s in stages.values())

    print("\ntrace", spans[0].trace_id)
    for s in spans:
        indent = "  " * _depth(s, by_id)
        print(f"  {indent}{s.name} [{s.attributes.get('ragserve.process')}] {s.ms:.1f} ms {s.events or ''}")


def _depth(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> int:
    depth = 0
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        depth += 1
    return depth


def test_ingest_is_one_trace_with_a_span_per_file(corpus_subset: Path, tmp_path: Path) -> None:
    """`ragserve ingest` with tracing on starts its own tracer provider and flushes it at exit."""
    receiver = OtlpReceiver()
    try:
        env = {
            **os.environ,
            "RAGSERVE_HOME": str(tmp_path / "home"),
            "RAGSERVE__OBSERVABILITY__TRACING__ENABLED": "true",
            "RAGSERVE__OBSERVABILITY__TRACING__ENDPOINT": receiver.endpoint,
        }
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)  # the session's; the config's must win here
        cmd = [sys.executable, "-m", "ragserve.cli", "ingest", str(corpus_subset), "--json"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        files = json.loads(out.stdout)["files"]
        spans = receiver.spans  # exported before the process exited
        (root,) = [s for s in spans if s.name == "ingest"]
        assert {s.trace_id for s in spans} == {root.trace_id}
        per_file = [s for s in spans if s.name == "ingest.file"]
        assert len(per_file) == files and all(s.attributes["chunks"] > 0 for s in per_file)
        writes = [s for s in spans if s.name == "ingest.write"]
        assert writes and sum(s.attributes["chunks"] for s in writes) == json.loads(out.stdout)["chunks_new"]
        assert {s.attributes["ragserve.process"] for s in spans} == {"cli ingest"}
    finally:
        receiver.stop()
