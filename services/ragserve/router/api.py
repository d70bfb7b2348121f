"""The HTTP API: a FastAPI app built per router replica around its RagService.

Built by a factory, not at import time, so everything a replica configures (guard settings, timeouts, the
service) is passed in: no process-wide state, and tests can build an app around any service.

A failing dependency is named to the client by a fixed reason ("Milvus unavailable"); its error text, which
can hold hosts, ports and collection names, goes to the log with the request id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from ray.serve.context import _get_serve_request_context  # Ray 2.60 has no public accessor
from ray.serve.exceptions import BackPressureError

from ragserve.generator.engine import GeneratorError
from ragserve.generator.prompt import PromptTooLongError
from ragserve.reranker.deployment import RerankerError
from ragserve.router.auth import ANONYMOUS, Principal
from ragserve.router.guard import GuardMiddleware, GuardSettings
from ragserve.router.instrument import RequestMetrics
from ragserve.router.models import (
    ChatRequest,
    DocumentsRequest,
    ModelList,
    QueryRequest,
    QueryResponse,
    SearchRequest,
    SearchResponse,
    error_body,
)
from ragserve.router.service import ApiError, RagService
from ragserve.router.ui import add_playground
from ragserve.store.connection import StoreError

T = TypeVar("T")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
log = logging.getLogger(__name__)


def _field_of(loc: tuple[Any, ...]) -> str:
    """("body", "filter", "sources", 0) -> "filter.sources.0" (the first element is where it came from)."""
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    return ".".join(parts) or "body"


class Unavailable(ApiError):
    """503 with a fixed reason for the client; ``detail``, the internal error, is only logged."""

    def __init__(self, reason: str, err: BaseException, retry_after_s: float = 2):
        super().__init__(503, "service_unavailable", reason, None, retry_after_s)
        self.detail = f"{type(err).__name__}: {err}"


def _unavailable(dependency: str, err: BaseException, retry_after_s: float = 2) -> Unavailable:
    return Unavailable(f"{dependency} unavailable", err, retry_after_s)


def request_id(request: Request) -> str:
    """Serve's id of this request (the client gets it as X-Request-ID), else the client's own header."""
    return _get_serve_request_context().request_id or request.headers.get("x-request-id") or "-"


async def guarded(work: Awaitable[T], timeout_s: float) -> T:
    """Map failures to HTTP: bad input 422, Milvus / generator / reranker down 503, too slow 504."""
    try:
        return await asyncio.wait_for(work, timeout_s)
    except ApiError:
        raise
    except PromptTooLongError as err:
        raise ApiError(422, "invalid_request_error", str(err), "question") from None
    except ValueError as err:  # limits and friends name the field first: "question: ..."
        field = str(err).split(":", 1)[0] if ":" in str(err) else None
        raise ApiError(422, "invalid_request_error", str(err), field) from None
    except StoreError as err:
        raise _unavailable("Milvus", err) from None
    except TimeoutError:
        raise ApiError(504, "timeout", f"request exceeded {timeout_s:.0f} s") from None
    except GeneratorError as err:
        raise _unavailable("generator", err) from None
    except RerankerError as err:
        raise _unavailable("reranker", err) from None
    except BackPressureError as err:
        raise Unavailable("at capacity, retry later", err, err.retry_after_s or 1) from None
    except Exception as err:  # a dead replica / actor surfaces as Ray's own exception types
        if type(err).__module__.startswith("ray"):
            raise _unavailable("a backend deployment", err) from None
        raise


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def principal_of(request: Request) -> Principal:
    """Who is asking, as the guard identified them (router/auth.py); ANONYMOUS with authentication off."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    return principal


def create_api(
    service: RagService,
    guard: GuardSettings,
    timeout_s: float,
    metrics_text: Callable[[], str],
    ui: bool = False,
) -> FastAPI:
    """The API of one router replica. ``metrics_text`` returns this node's Prometheus exposition; ``ui``
    serves the web playground at /ui (router/ui.py)."""
    api = FastAPI(
        title="ragserve",
        version="0.1.0",
        description="Retrieval-augmented generation over your documents: Milvus retrieval + vLLM generation.",
    )

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _field_of(tuple(first.get("loc", ())))
        return JSONResponse(
            error_body("invalid_request_error", f"{field}: {first['msg']}", field), status_code=422
        )

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if isinstance(exc, Unavailable):
            log.warning("request %s: 503 %s: %s", request_id(request), exc.message, exc.detail)
        return JSONResponse(
            error_body(exc.type, exc.message, exc.field), status_code=exc.status, headers=exc.headers
        )

    api.add_middleware(GuardMiddleware, settings=guard)
    add_playground(api, ui)  # outside the guard: the page loads without a key, its API calls need one
    api.add_middleware(RequestMetrics, api=api)  # added last = outermost: counts what the guard rejects

    # ---- probes -----------------------------------------------------------------------------------------
    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Each check "ok" or "unavailable"; why a check failed is logged, not answered."""
        ready, checks = await service.readiness()
        for name, result in checks.items():
            if result != "ok":
                log.warning("request %s: readiness check %s: %s", request_id(request), name, result)
        shown = {name: "ok" if result == "ok" else "unavailable" for name, result in checks.items()}
        return JSONResponse({"ready": ready, "checks": shown}, status_code=200 if ready else 503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        """This node's Ray metrics agent, for a single machine and debugging. In Kubernetes Prometheus
        scrapes every Ray pod's metrics port instead (PodMonitor): a replica sees only its own node."""
        try:
            text = await asyncio.wait_for(asyncio.to_thread(metrics_text), 10)
        except Exception as err:
            raise _unavailable("the Ray metrics agent", err) from None
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- RAG --------------------------------------------------------------------------------------------
    @api.post("/v1/query", response_model=QueryResponse)
    async def query(body: QueryRequest, request: Request) -> Any:
        principal = principal_of(request)
        if body.stream:
            return _stream(await guarded(service.query_events(body, principal), timeout_s))
        return await guarded(service.query(body, principal), timeout_s)

    @api.post("/v1/search", response_model=SearchResponse)
    async def search(body: SearchRequest, request: Request) -> Any:
        return await guarded(service.search(body, principal_of(request)), timeout_s)

    @api.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        principal = principal_of(request)
        if body.stream:
            return _stream(await guarded(service.chat_events(body, principal), timeout_s))
        return await guarded(service.chat(body, principal), timeout_s)

    @api.get("/v1/models", response_model=ModelList)
    async def models() -> Any:
        return service.models()

    # ---- documents --------------------------------------------------------------------------------------
    @api.post("/v1/documents")
    async def add_documents(body: DocumentsRequest, request: Request) -> Any:
        return await guarded(service.add_documents(body, principal_of(request)), timeout_s)

    @api.delete("/v1/documents/{source:path}")
    async def delete_document(source: str, request: Request) -> Any:
        return await guarded(service.delete_document(source, principal_of(request)), timeout_s)

    @api.get("/v1/collections/stats")
    async def collection_stats(request: Request) -> Any:
        return await guarded(service.stats(principal_of(request)), timeout_s)

    return api
