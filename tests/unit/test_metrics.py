"""Request metrics outside Ray (prometheus-client backend): bounded route labels, status codes, timing."""

from __future__ import annotations

import prometheus_client
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ragserve.observability import metrics
from ragserve.router.guard import GuardMiddleware, GuardSettings, digest
from ragserve.router.instrument import RequestMetrics


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise RuntimeError("boom")
        return {"id": item_id}

    app.add_middleware(GuardMiddleware, settings=GuardSettings(key_digests=[digest("k")]))
    app.add_middleware(RequestMetrics, api=app)
    return app


def test_requests_are_counted_by_route_template_and_status() -> None:
    client = TestClient(make_app(), raise_server_exceptions=False)
    ok = {"Authorization": "Bearer k"}
    before = {
        status: sample("ragserve_requests_total", route="/v1/items/{item_id}", status=status)
        for status in ("200", "401", "422", "500")
    }
    before_unmatched = sample("ragserve_requests_total", route="unmatched", status="404")
    before_total = sample("ragserve_stage_latency_seconds_count", stage="total", route="/v1/items/{item_id}")

    for item in (1, 2, 3):
        assert client.get(f"/v1/items/{item}", headers=ok).status_code == 200
    assert client.get("/v1/items/1").status_code == 401  # rejected by the guard: still counted
    assert client.get("/v1/items/x", headers=ok).status_code == 422
    assert client.get("/v1/items/0", headers=ok).status_code == 500
    assert client.get("/nowhere/abc", headers=ok).status_code == 404

    def delta(status: str) -> float:
        return sample("ragserve_requests_total", route="/v1/items/{item_id}", status=status) - before[status]

    assert (delta("200"), delta("401"), delta("422"), delta("500")) == (3, 1, 1, 1)
    assert sample("ragserve_requests_total", route="unmatched", status="404") - before_unmatched == 1
    total = sample("ragserve_stage_latency_seconds_count", stage="total", route="/v1/items/{item_id}")
    assert total - before_total == 6
    # Raw paths never become label values.
    names = {s.labels.get("route") for m in prometheus_client.REGISTRY.collect() for s in m.samples}
    assert "/v1/items/1" not in names and "/nowhere/abc" not in names


def test_stage_timings_and_route_context() -> None:
    before = sample("ragserve_stage_latency_seconds_count", stage="embed", route="/v1/search")
    token = metrics.current_route.set("/v1/search")
    try:
        metrics.observe_stages({"embed_ms": 12.0, "search_ms": 3.0}, ("embed",))
    finally:
        metrics.current_route.reset(token)
    assert sample("ragserve_stage_latency_seconds_count", stage="embed", route="/v1/search") - before == 1
    assert sample("ragserve_stage_latency_seconds_count", stage="search", route="/v1/search") == 0
    metrics.TOKENS.inc(0, direction="out")  # zero increments are ignored, never an error


def test_a_request_cancelled_before_its_response_counts_as_499() -> None:
    """The client went away (Serve cancels the handler): not a server error, so no error-rate alert."""
    import asyncio
    import contextlib

    app = make_app()
    started = asyncio.Event()

    async def waits_forever(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.Event().wait()

    middleware = RequestMetrics(waits_forever, api=app)
    scope = {"type": "http", "method": "GET", "path": "/v1/items/7", "headers": [], "query_string": b""}
    labels = {"route": "/v1/items/{item_id}"}
    before = {s: sample("ragserve_requests_total", status=s, **labels) for s in ("499", "500")}

    async def call_then_cancel() -> None:
        task = asyncio.create_task(middleware(scope, None, None))  # type: ignore[arg-type]
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(call_then_cancel())
    assert sample("ragserve_requests_total", status="499", **labels) - before["499"] == 1
    assert sample("ragserve_requests_total", status="500", **labels) - before["500"] == 0
