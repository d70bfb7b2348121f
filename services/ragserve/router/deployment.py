"""The router: Serve's HTTP ingress deployment, composing the embedder pool, Milvus and the generator.

Its FastAPI app is built per replica by ``__serve_build_asgi_app__`` (Serve calls it after the constructor),
so the app holds this replica's service and guard settings instead of reading module globals.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import FastAPI
from ray import serve

from ragserve.config import AppConfig, AuthConfig
from ragserve.embedder.deployment import RemoteEmbedder
from ragserve.generator.deployment import RemoteGenerator
from ragserve.generator.engine import resolve_model
from ragserve.handles import result_from_thread
from ragserve.ingest.pipeline import Ingestor
from ragserve.observability.metrics import node_metrics_text
from ragserve.rag import build_pipeline
from ragserve.reranker.deployment import RemoteReranker
from ragserve.router.api import create_api
from ragserve.router.auth import OidcVerifier, load_keys_file
from ragserve.router.guard import GuardSettings
from ragserve.router.service import RagService
from ragserve.store.connection import StoreError
from ragserve.store.milvus import MilvusStore

log = logging.getLogger(__name__)


def guard_settings(
    auth: AuthConfig, max_body_bytes: int, environ: dict[str, str] | None = None
) -> GuardSettings:
    """Admission settings from config and the keys in ``$auth.api_keys_env`` (filled from a Secret)."""
    env = dict(os.environ) if environ is None else environ
    keys = [k.strip() for k in env.get(auth.api_keys_env, "").split(",") if k.strip()]
    principals = load_keys_file(auth.keys_file) if auth.keys_file else {}
    oidc = OidcVerifier(auth.oidc) if auth.oidc else None
    settings = GuardSettings.build(
        keys, auth.key_sha256, auth.rate_limit_per_minute, max_body_bytes, principals, oidc
    )
    if auth.required and not settings.enabled:
        raise RuntimeError(
            f"router.auth.required is set but ${auth.api_keys_env}, key_sha256, keys_file and oidc "
            "give no way in"
        )
    return settings


def by_value(handle: Any) -> Any:
    """The handle a request uses: calls go over gRPC straight to a replica, arguments and results by value
    (Serve's ``_by_reference=False``), instead of a Ray actor task whose result goes through the object
    store: less latency and CPU per call (load-tests/RESULTS.md, "Transport and query coalescing"). Set
    here, not left to ``RAY_SERVE_USE_GRPC_BY_DEFAULT``: a handle keeps the options of the process that
    built the app (a driver's ``serve.run`` or the controller's), not the Router's. Our calls pass plain
    values only (texts, token ids, vectors, deltas), never ObjectRefs."""
    return handle.options(_by_reference=False)


@serve.ingress()
class RouterDeployment:
    """Constructed by build_app with handles to the other deployments (async: it awaits them)."""

    async def __init__(  # type: ignore[misc]
        self,
        cfg: AppConfig,
        embedder: Any,
        generator: Any,
        lite_server: Any = None,
        reranker: Any = None,
    ):
        from transformers import AutoTokenizer

        self.cfg = cfg
        self.guard = guard_settings(cfg.router.auth, cfg.router.max_body_bytes)
        embedder, generator = by_value(embedder), by_value(generator)
        reranker = by_value(reranker) if reranker is not None else None
        self._embedder_handle = embedder
        self._generator_handle = generator
        self._reranker_handle = reranker
        remote_embedder = await RemoteEmbedder.connect(
            embedder, cfg.embedder.max_batch_size, cfg.router.embed_documents_timeout_s
        )
        # Several replicas share one Milvus Lite through its owner's gRPC server, asked once per replica
        # start and per owner move, not per request.
        self._lite_handle = lite_server
        self._loop = asyncio.get_running_loop()  # the replica's: _locate_lite calls the handle there
        lite_uri = await lite_server.uri.remote() if lite_server is not None else None
        self.store = MilvusStore.for_app(cfg, lite_uri, self._locate_lite if lite_server else None)
        await asyncio.to_thread(self.store.ensure_collection, remote_embedder.dim, remote_embedder.model_name)
        tokenizer: Any = AutoTokenizer.from_pretrained(resolve_model(cfg.generator, cfg.cache_dir))
        remote_generator = RemoteGenerator(
            generator, cfg.generator.model_id, cfg.router.first_token_timeout_s
        )
        rerank = RemoteReranker(reranker, cfg.reranker.timeout_s) if reranker is not None else None
        # No default access: every search must carry its caller's (RagService sets it from the principal),
        # so a request path that forgot it fails instead of reading the default tenant.
        pipeline = build_pipeline(
            cfg, remote_embedder.embed_queries, self.store, remote_generator, tokenizer, rerank, access=None
        )
        checks = {"embedder": self._check_embedder, "generator": self._check_generator}
        if reranker is not None:
            checks["reranker"] = self._check_reranker
        self.service = RagService(cfg, pipeline, Ingestor(remote_embedder, self.store, cfg.ingest), checks)

    def __serve_build_asgi_app__(self) -> FastAPI:
        router = self.cfg.router
        return create_api(self.service, self.guard, router.request_timeout_s, node_metrics_text, router.ui)

    def _locate_lite(self) -> str:
        """The Lite owner's URI now (store threads call it). While the owner restarts the handle waits for
        its replacement, as long as a request may take: a rollout stops the old owner before the new one
        starts (two cannot open the file), seconds on a busy node."""
        timeout_s = self.cfg.router.request_timeout_s
        uri: str = result_from_thread(self._loop, lambda: self._lite_handle.uri.remote(), timeout_s)
        return uri

    async def check_health(self) -> None:
        """Serve calls this every health_check_period_s. A rollout replaces the Milvus Lite owner, which then
        listens on a new port: follow it before a search has to (a search that fails on the old port
        follows it too, and is retried there)."""
        if self._lite_handle is None:
            return
        try:
            await asyncio.to_thread(self.store.follow)
        except StoreError:  # the new owner is not serving yet: not this replica's fault, next period
            log.info("cannot reconnect to the Milvus Lite owner yet", exc_info=True)

    async def _check_embedder(self) -> None:
        await self._embedder_handle.check_health.remote()

    async def _check_generator(self) -> None:
        await self._generator_handle.check_health.remote()

    async def _check_reranker(self) -> None:
        await self._reranker_handle.check_health.remote()
