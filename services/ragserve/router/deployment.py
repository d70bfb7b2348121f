"""The HTTP ingress: FastAPI routes on a Serve deployment that composes embedder, Milvus and generator."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from ray import serve
from ray.serve.exceptions import BackPressureError

from ragserve.config import AppConfig
from ragserve.generator.engine import GeneratorError, resolve_model
from ragserve.generator.prompt import PromptBuilder, PromptTooLongError
from ragserve.observability.metrics import node_metrics_text
from ragserve.router import guard
from ragserve.router.guard import BodyTooLarge, GuardMiddleware, GuardSettings
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
from ragserve.router.service import ApiError, RagService, RemoteEmbedder
from ragserve.store.milvus import MilvusStore, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}

api = FastAPI(
    title="ragserve",
    version="0.1.0",
    description="Retrieval-augmented generation over your documents: Milvus retrieval + vLLM generation.",
)


def _field_of(loc: tuple[Any, ...]) -> str:
    """("body", "filter", "sources", 0) -> "filter.sources.0" (the first element is where it came from)."""
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    return ".".join(parts) or "body"


@api.exception_handler(RequestValidationError)
async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = _field_of(tuple(first.get("loc", ())))
    return JSONResponse(
        error_body("invalid_request_error", f"{field}: {first['msg']}", field), status_code=422
    )


@api.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.type, exc.message, exc.field), status_code=exc.status, headers=exc.headers
    )


@api.exception_handler(BodyTooLarge)
async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse(error_body("request_too_large", str(exc)), status_code=413)


api.add_middleware(GuardMiddleware)
api.add_middleware(RequestMetrics, api=api)  # added last = outermost: counts what the guard rejects too


def _unavailable(dependency: str, err: BaseException, retry_after_s: float = 2) -> ApiError:
    return ApiError(503, "service_unavailable", f"{dependency} unavailable: {err}"[:500], None, retry_after_s)


async def guarded(work: Awaitable[T], timeout_s: float) -> T:
    """Map failures to HTTP: bad input 422, Milvus / generator down 503, too slow 504."""
    try:
        return await asyncio.wait_for(work, timeout_s)
    except ApiError:
        raise
    except PromptTooLongError as err:
        raise ApiError(422, "invalid_request_error", str(err), "question") from None
    except ValueError as err:  # validate_question and friends name the field first: "question: ..."
        field = str(err).split(":", 1)[0] if ":" in str(err) else None
        raise ApiError(422, "invalid_request_error", str(err), field) from None
    except StoreError as err:
        raise _unavailable("Milvus", err) from None
    except TimeoutError:
        raise ApiError(504, "timeout", f"request exceeded {timeout_s:.0f} s") from None
    except GeneratorError as err:
        raise _unavailable("generator", err) from None
    except BackPressureError as err:
        raise _unavailable("capacity", err, err.retry_after_s or 1) from None
    except Exception as err:  # a dead replica / actor surfaces as Ray's own exception types
        if type(err).__module__.startswith("ray"):
            raise _unavailable("a backend deployment", err) from None
        raise


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


@serve.ingress(api)
class RouterDeployment:
    """Constructed by build_app with handles to the other deployments (async: it awaits them)."""

    async def __init__(self, cfg: AppConfig, embedder: Any, generator: Any, lite_server: Any = None):  # type: ignore[misc]
        from transformers import AutoTokenizer

        from ragserve.generator.deployment import RemoteGenerator

        self.cfg = cfg
        self._configure_guard(cfg)
        self._embedder_handle = embedder
        self._generator_handle = generator
        self._lite_server = lite_server
        self.timeout_s = cfg.router.request_timeout_s
        info = await embedder.info.remote()
        store_cfg = cfg.store
        if lite_server is not None:  # several replicas share one Milvus Lite through its owner's gRPC server
            store_cfg = store_cfg.model_copy(update={"uri": await lite_server.uri.remote()})
        self.store = MilvusStore(store_cfg)
        await asyncio.to_thread(self.store.ensure_collection, int(info["dim"]), str(info["model"]))
        tokenizer: Any = AutoTokenizer.from_pretrained(resolve_model(cfg.generator, cfg.cache_dir))
        prompt = PromptBuilder(tokenizer, cfg.prompt.system_prompt, cfg.generator.max_model_len)
        self.service = RagService(
            cfg,
            RemoteEmbedder(embedder, str(info["model"]), int(info["dim"])),
            self.store,
            RemoteGenerator(generator, cfg.generator.model_id, cfg.router.first_token_timeout_s),
            prompt,
            checks={"embedder": self._check_embedder, "generator": self._check_generator},
        )

    @staticmethod
    def _configure_guard(cfg: AppConfig) -> None:
        auth = cfg.router.auth
        keys = [k.strip() for k in os.environ.get(auth.api_keys_env, "").split(",") if k.strip()]
        settings = GuardSettings.build(
            keys, auth.key_sha256, auth.rate_limit_per_minute, cfg.router.max_body_bytes
        )
        if auth.required and not settings.key_digests:
            raise RuntimeError(
                f"router.auth.required is set but ${auth.api_keys_env} and key_sha256 hold no keys"
            )
        guard.configure(settings)  # the middleware reads this process-wide object

    async def _check_embedder(self) -> None:
        await self._embedder_handle.check_health.remote()

    async def _check_generator(self) -> None:
        await self._generator_handle.check_health.remote()

    # ---- probes ---------------------------------------------------------------------------------------
    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        ready, checks = await self.service.readiness()
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics(self) -> PlainTextResponse:
        """This node's Ray metrics agent, for a single machine and debugging. In Kubernetes Prometheus
        scrapes every Ray pod's metrics port instead (PodMonitor): a replica sees only its own node."""
        try:
            text = await asyncio.wait_for(asyncio.to_thread(node_metrics_text), 10)
        except Exception as err:
            raise _unavailable("the Ray metrics agent", err) from None
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- RAG ------------------------------------------------------------------------------------------
    @api.post("/v1/query", response_model=QueryResponse)
    async def query(self, body: QueryRequest) -> Any:
        if body.stream:
            return _stream(await guarded(self.service.query_events(body), self.timeout_s))
        return await guarded(self.service.query(body), self.timeout_s)

    @api.post("/v1/search", response_model=SearchResponse)
    async def search(self, body: SearchRequest) -> Any:
        return await guarded(self.service.search(body), self.timeout_s)

    @api.post("/v1/chat/completions")
    async def chat_completions(self, body: ChatRequest) -> Any:
        if body.stream:
            return _stream(await guarded(self.service.chat_events(body), self.timeout_s))
        return await guarded(self.service.chat(body), self.timeout_s)

    @api.get("/v1/models", response_model=ModelList)
    async def models(self) -> Any:
        return self.service.models()

    # ---- documents ------------------------------------------------------------------------------------
    @api.post("/v1/documents")
    async def add_documents(self, body: DocumentsRequest) -> Any:
        return await guarded(self.service.add_documents(body), self.timeout_s)

    @api.delete("/v1/documents/{source:path}")
    async def delete_document(self, source: str) -> Any:
        return await guarded(self.service.delete_document(source), self.timeout_s)

    @api.get("/v1/collections/stats")
    async def collection_stats(self) -> Any:
        return await guarded(self.service.stats(), self.timeout_s)
