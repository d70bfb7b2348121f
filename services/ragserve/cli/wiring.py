"""The in-process parts a local command uses: the store, the encoder, the reranker, the vLLM engine, and
the operator's tenant and groups from the flags. Each part is imported when it is opened."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ragserve.cli.errors import EXIT_USAGE, CliError, ModelLoadError
from ragserve.observability.logging import Console
from ragserve.store.filters import DEFAULT_TENANT, Access

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from ragserve.config import AppConfig, EmbedderConfig

# Commands whose output is all there is (no models, no Milvus): nothing to divert.
PURE_OUTPUT = {"config", "serve-config"}


def prepare_environment(cfg: AppConfig, args: argparse.Namespace) -> Console:
    """Process-wide settings that must precede the first import of transformers / vLLM. Without -v, library
    warnings and engine logs go to <data_dir>/logs/<command>.log; the command's own output to the terminal."""
    from ragserve import environment
    from ragserve.observability.logging import configure_logging

    environment.apply(cfg)
    log_file = None if args.command in PURE_OUTPUT else cfg.data_dir / "logs" / f"{args.command}.log"
    con = configure_logging(args.verbose, log_file)
    if con.log is not None:
        print(f"engine and library logs: {con.log} (-v shows them here)", file=con.err)
    return con


def open_store(cfg: AppConfig):  # -> MilvusStore
    from ragserve.store.milvus import MilvusStore

    return MilvusStore.for_app(cfg)


def open_encoder(cfg: AppConfig, embedder: EmbedderConfig | None = None):  # -> Encoder
    from ragserve.embedder.encoder import Encoder

    embedder = embedder or cfg.embedder
    try:
        return Encoder(embedder)
    except (OSError, ValueError) as err:  # missing files, offline hub, not a sentence-transformers model
        raise ModelLoadError(f"embedder model {embedder.model!r} cannot be loaded: {err}") from err


class DeferredEncoder:
    """``ingest``'s encoder, loaded at its first use: a wrong path or a folder with no supported files is
    reported in about a second, not after the model load (ten seconds for MiniLM on a laptop CPU)."""

    def __init__(self, cfg: AppConfig):
        self._cfg = cfg
        self._encoder: Any = None
        self.model_name = cfg.embedder.model

    def _loaded(self) -> Any:  # Encoder
        if self._encoder is None:
            self._encoder = open_encoder(self._cfg)
        return self._encoder

    @property
    def dim(self) -> int:
        return int(self._loaded().dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._loaded().embed_documents(texts)


def open_search(cfg: AppConfig):  # -> (query embedder, MilvusStore)
    """The question encoder (``embedder.query_backend``: the local profile's fp32 ONNX export never imports
    torch, 5 of a torch `ragserve search`'s 7 CPU seconds) and the store of an existing collection, checked
    against each other."""
    from ragserve.retrieval import local_query_embedder
    from ragserve.store.connection import StoreError

    store = open_store(cfg)
    if not store.has_collection():
        raise CliError(
            f"collection {cfg.store.collection!r} does not exist in {cfg.store.uri}: "
            "run `ragserve ingest PATH` first",
            EXIT_USAGE,
        )
    encoder = open_encoder(cfg, cfg.embedder.for_queries())
    try:
        store.ensure_collection(encoder.dim, encoder.model_name)
    except StoreError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    return local_query_embedder(encoder), store


def open_reranker(cfg: AppConfig, force: bool = False):  # -> Rerank | None
    """The in-process cross-encoder when reranker.enabled (or ``force``: eval's `rerank` mode)."""
    if not (cfg.reranker.enabled or force):
        return None
    from ragserve.reranker.scorer import CrossEncoderScorer
    from ragserve.retrieval import local_reranker

    try:
        return local_reranker(CrossEncoderScorer(cfg.reranker, cfg.cache_dir))
    except OSError as err:
        raise ModelLoadError(f"reranker model {cfg.reranker.model!r} cannot be loaded: {err}") from err


def start_generator(cfg: AppConfig):  # -> VLLMGenerator
    """The in-process vLLM engine. Resolving the model (generating or converting it on first use) and
    starting the engine both count as loading it: a missing package or file is exit 3, named."""
    from ragserve.generator.engine import VLLMGenerator

    try:
        generator = VLLMGenerator(cfg.generator, cfg.cache_dir)
        generator.start()
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"generator model {cfg.generator.model!r} cannot be loaded: {err}") from err
    return generator


def access_of(args: argparse.Namespace) -> Access:
    """The operator's view of ``--tenant``: every document of that tenant, whatever its groups."""
    from ragserve.store.filters import check_tenant

    tenant = DEFAULT_TENANT if args.tenant is None else args.tenant
    try:
        return Access(check_tenant(tenant, "--tenant"))
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def groups_of(args: argparse.Namespace) -> tuple[str, ...]:
    """``--groups a,b``: the groups every ingested document gets (none: the whole tenant reads them)."""
    from ragserve.store.filters import check_groups

    try:
        return check_groups((g.strip() for g in (args.groups or "").split(",") if g.strip()), "--groups")
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
