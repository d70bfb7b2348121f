"""Ingestion on Ray Data: the local run's plan (ingest/plan.py) with its stages run on a Ray cluster.

    discover (driver) -> read + parse + chunk (Ray Data tasks, materialized) -> plan (driver: one
    document_index, unchanged files skipped) -> embed (actor pool, model loaded once per actor; it drops
    the chunks of files the plan skips) -> upsert (writer actors; the first creates a new collection from
    the real vectors) -> delete stale (driver, per file, once all its new chunks are written)

Chunk ids, hashing, planning, the crash-safety rule and the report are the local run's own functions
(ingest/prepare.py, ingest/plan.py), so a ``--ray`` run and a local run write the same collection. The
driver learns which chunks are written from the writers' output (source, chunk_index), so a file's old
version is deleted only after its last new chunk came back; a crash in between leaves both versions,
which the next run finishes, as locally.

Milvus Lite: only one process may open the file, so with a Lite URI one actor on the driver's node owns it
and serves it over gRPC for the length of the job; the driver and the writers connect to its
``http://127.0.0.1:port`` exactly as to a Milvus server (one code path). That needs a single-node Ray; on a
cluster, use a Milvus server, which takes the writers' upserts in parallel.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from ragserve import environment
from ragserve.config import AppConfig, EmbedderConfig, IngestConfig, IngestRayConfig, StoreConfig
from ragserve.ingest.loaders import LoaderError
from ragserve.ingest.plan import (
    IngestPlan,
    IngestReport,
    Progress,
    finish_file,
    make_plan,
    open_run,
    prune_gone,
    target_collection,
)
from ragserve.ingest.prepare import embed_text, make_splitter, prepare
from ragserve.ingest.rows import CHUNK_SCHEMA, append_row, chunks_of, file_rows, records_of
from ragserve.ingest.sources import IngestError, is_object_store
from ragserve.observability import metrics
from ragserve.store.connection import StoreError, lite_locked
from ragserve.store.filters import DEFAULT_TENANT, Access, check_groups, check_tenant
from ragserve.store.lease import Lease
from ragserve.store.milvus import ChunkRecord, MilvusStore

log = logging.getLogger(__name__)
# Files are parsed in this many blocks per parse task or embedding actor, whichever are more. An embedding
# actor takes whole blocks (bundled up to embed_batch_size chunks), so blocks must be small next to the job:
# with 4 per worker an actor sat idle at the end while the other still had a quarter of the corpus to go.
BLOCKS_PER_WORKER = 32


@dataclass(frozen=True)
class Placement:
    """Where a run's documents go: one tenant, each document with the same groups."""

    tenant: str = DEFAULT_TENANT
    groups: tuple[str, ...] = ()

    @property
    def access(self) -> Access:
        """What the run plans, prunes and deletes within: its tenant's documents of any group."""
        return Access(self.tenant)


@dataclass(frozen=True)
class FileDigest:
    """A parsed file as planning sees it (the chunks stay in Ray's object store)."""

    source: str
    doc_hash: str
    n_chunks: int


# ---- stages (run in Ray workers) -----------------------------------------------------------------------
def parse_files(
    batch: dict[str, np.ndarray],
    cfg: IngestConfig,
    uri: str | None,
    origin: str,
    tenant: str = DEFAULT_TENANT,
    groups: tuple[str, ...] = (),
) -> pa.Table:
    """Read, clean and chunk files with prepare.prepare; a LoaderError becomes an error row. ``uri``: the
    object store root the paths are in (None: local paths); ``origin``: the run's (sources.origin_of);
    ``tenant`` and ``groups``: the run's, part of each chunk's id and hash."""
    splitter = make_splitter(cfg)
    filesystem = _filesystem(uri) if uri else None
    rows: dict[str, list[Any]] = {name: [] for name in CHUNK_SCHEMA.names}
    for path, source in zip(batch["path"], batch["source"], strict=True):
        try:
            if filesystem is None:
                records = prepare(
                    Path(path), str(source), cfg, splitter, origin=origin, tenant=tenant, groups=groups
                ).records()
            else:
                raw = _read_object(filesystem, str(path))
                records = prepare(
                    PurePosixPath(path),
                    str(source),
                    cfg,
                    splitter,
                    raw,
                    origin=origin,
                    tenant=tenant,
                    groups=groups,
                ).records()
        except LoaderError as err:
            failed = ChunkRecord("", str(source), "", "", -1, "")
            append_row(rows, failed, n_chunks=0, error=str(err))
            continue
        for r in records:
            append_row(rows, r, n_chunks=len(records), error="")
    return pa.Table.from_pydict(rows, schema=CHUNK_SCHEMA)


def _filesystem(uri: str) -> Any:
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri)[0]


def _read_object(filesystem: Any, path: str) -> bytes:
    try:
        with filesystem.open_input_file(path) as f:
            return bytes(f.readall())
    except OSError as err:
        raise LoaderError(f"cannot read object: {err}") from None


def _load_encoder(embedder: EmbedderConfig, env: dict[str, str]) -> Any:
    for key, value in env.items():  # before the first transformers import in this worker
        os.environ.setdefault(key, value)
    from ragserve.embedder.encoder import Encoder

    return Encoder(embedder)


class EmbedChunks:
    """Embedding actor (map_batches callable class): loads the model once, keeps the chunks of the files
    the plan writes (``write``) and adds a ``vector`` column. Filtering here rather than in a task stage of
    its own saves a worker process per concurrent task (zero-CPU tasks each got one: 2 CPU s apiece)."""

    def __init__(self, embedder: EmbedderConfig, env: dict[str, str], with_title: bool, write: list[str]):
        self.encoder = _load_encoder(embedder, env)
        self.with_title = with_title
        self.write = frozenset(write)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = chunks_of(batch, self.write)
        texts = [embed_text(r, self.with_title) for r in records_of(batch)]
        if not texts:
            return {**batch, "vector": np.zeros((0, self.encoder.dim), dtype=np.float32)}
        return {**batch, "vector": self.encoder.embed_documents(texts)}


class WriteChunks:
    """Writer actor: upserts embedded chunks and returns which ones are written (source, chunk_index)."""

    def __init__(
        self,
        store: StoreConfig,
        require_bm25: bool,
        model_name: str,
        tenant: str = DEFAULT_TENANT,
        groups: tuple[str, ...] = (),
    ):
        self.store = MilvusStore(store, require_bm25=require_bm25)
        self.model_name = model_name
        self.tenant, self.groups = tenant, groups
        self.checked = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = np.asarray(batch["vector"], dtype=np.float32)
        if not self.checked:  # the real vectors against the collection; also learns its BM25 field
            self.store.ensure_collection(vectors.shape[1], self.model_name)
            self.checked = True
        self.store.upsert(records_of(batch, self.tenant, self.groups), vectors)
        return {"source": batch["source"], "chunk_index": batch["chunk_index"]}


# ---- driver ---------------------------------------------------------------------------------------------
def ingest_on_ray(
    cfg: AppConfig,
    root: Path | str,
    *,
    address: str | None = None,
    base_url: str | None = None,
    prune: bool = False,
    rebuild: bool = False,
    progress: Progress | None = None,
    show_progress: bool = False,
    tenant: str = DEFAULT_TENANT,
    groups: Sequence[str] = (),
) -> IngestReport:
    """``ragserve ingest PATH --ray [ADDRESS]``: the local Ingestor's plan and report, on Ray Data.

    Uses the Ray this process is already connected to; otherwise starts a local one (``address`` None)
    or connects to ``address`` ("auto", "ray://head:10001") and disconnects at the end.
    ``show_progress``: Ray Data's own progress bars on stderr."""
    import ray

    if cfg.ingest.ray is None:
        raise IngestError("ingest.ray is not configured: set it in the config file (see the profiles)")
    placement = Placement(check_tenant(tenant), check_groups(groups))
    started_ray = False
    if not ray.is_initialized():
        _init_ray(address)
        started_ray = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = show_progress
    owner = None
    try:
        uri = None
        if cfg.store.is_lite:
            path = Path(str(cfg.store.uri)).expanduser()
            if lite_locked(path):  # e.g. the actor of a killed run, until Ray has stopped it
                raise StoreError(f"the Milvus Lite file {path} is in use by another process; wait for it")
            owner = _start_lite_owner(str(path))
            uri = ray.get(owner.uri.remote())
        store = MilvusStore.for_app(cfg, uri)
        try:
            return _run(cfg, cfg.ingest.ray, store, str(root), base_url, prune, rebuild, progress, placement)
        finally:
            store.close()
    finally:
        if owner is not None:
            try:
                ray.get(owner.stop.remote(), timeout=30)
            except Exception:  # a dead owner must not hide the error that brought us here
                log.warning("the Milvus Lite owner did not stop cleanly", exc_info=True)
            ray.kill(owner)
        if started_ray:
            ray.shutdown()


def _init_ray(address: str | None) -> None:
    import ray

    if address:  # an existing cluster (a RayJob's): no retry, its error is the answer
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    else:
        environment.start_local_ray(address="local", include_dashboard=False, configure_logging=False)


def _start_lite_owner(path: str) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    from ragserve.store.lite_server import LiteOwner

    owner: Any = ray.remote(LiteOwner)
    return owner.options(num_cpus=0, max_restarts=0, scheduling_strategy=here).remote(path)


def _run(
    cfg: AppConfig,
    rcfg: IngestRayConfig,
    store: MilvusStore,
    root: str,
    base_url: str | None,
    prune: bool,
    rebuild: bool,
    progress: Progress | None,
    placement: Placement,
) -> IngestReport:
    """The run holds the collection's lease (store/lease.py) throughout; ``rebuild`` writes into a new
    collection that takes over the name at the end (plan.target_collection): the writers get its name
    in their StoreConfig, so they write there and the first one creates it."""
    started = time.perf_counter()
    found, report, origin = open_run(root, cfg.ingest, base_url)
    with Lease(store, f"ingest --ray {origin}") as lease:
        order = {source: i for i, (_, source) in enumerate(found.files)}
        parsed: Any = None
        digests: list[FileDigest] = []
        if found.files:
            parsed, digests, failed = _parse(cfg, rcfg, root, found.files, origin, placement)
            digests.sort(key=lambda f: order[f.source])
            for source, reason in sorted(failed, key=lambda f: order[f[0]]):
                log.warning("skipping %s: %s", source, reason)
                report.files_failed.append((source, reason))
        with target_collection(store, rebuild, report, placement.tenant) as target:
            _write(cfg, rcfg, target, parsed, digests, origin, prune, report, progress, placement)
            lease.check()  # before a rebuild's switch: a run that lost its lease must not switch
    report.seconds = time.perf_counter() - started
    return report


def _write(
    cfg: AppConfig,
    rcfg: IngestRayConfig,
    store: MilvusStore,
    parsed: Any,
    digests: list[FileDigest],
    origin: str,
    prune: bool,
    report: IngestReport,
    progress: Progress | None,
    placement: Placement,
) -> None:
    """Plan against ``store`` (the collection or a rebuild's new one), embed and write, delete stale."""
    env = environment.process_env(cfg)
    gpu = {"num_cpus": rcfg.num_cpus_per_actor, "num_gpus": rcfg.num_gpus_per_actor}
    model_name = cfg.embedder.model
    # An existing collection is checked here (model, metric, BM25) and its dimension by each writer. A new
    # one is created by the first writer from the real vectors: no model load on the driver just for its
    # dimension (the model may need the GPU workers' hardware anyway).
    dim = store.vector_dim()
    if dim is not None:
        store.ensure_collection(dim, model_name)
    access = placement.access
    owned = store.sources_of_origin(origin, access=access) if prune and dim is not None else set()
    failed_sources = [source for source, _ in report.files_failed]
    existing = store.document_index(access=access) if dim is not None else {}
    plan = make_plan(digests, existing, owned, failed_sources)
    report.files_unchanged = len(plan.unchanged)

    if plan.write and parsed is not None:
        retry = {"max_restarts": rcfg.max_restarts, "max_task_retries": -1 if rcfg.max_restarts else 0}
        written = parsed.map_batches(
            EmbedChunks,
            fn_constructor_args=(cfg.embedder, env, cfg.ingest.embed_title, [f.source for f in plan.write]),
            batch_size=rcfg.embed_batch_size,
            concurrency=rcfg.embed_actors,
            **gpu,
            **retry,
        ).map_batches(
            WriteChunks,
            fn_constructor_args=(
                store.cfg,
                store.require_bm25,
                model_name,
                placement.tenant,
                placement.groups,
            ),
            batch_size=cfg.store.write_batch_size,
            concurrency=rcfg.write_concurrency,
            num_cpus=0,  # waits on Milvus; must not take a CPU from the embedding actors
            **retry,
        )
        _finish_as_written(written, store, plan, report, progress, access)
    prune_gone(store, plan, report, access)


def _parse(
    cfg: AppConfig,
    rcfg: IngestRayConfig,
    root: str,
    found: list[tuple[str, str]],
    origin: str,
    placement: Placement,
) -> tuple[Any, list[FileDigest], list[tuple[str, str]]]:
    """Read, parse and chunk every file on Ray Data: the materialized chunks, each parsed file's digest, and
    the (source, reason) of each file that failed to load."""
    import ray

    files = ray.data.from_items(
        [{"path": path, "source": source} for path, source in found],
        override_num_blocks=min(
            len(found), BLOCKS_PER_WORKER * max(rcfg.parse_concurrency, rcfg.embed_actors)
        ),
    )
    parse: Any = parse_files  # Ray's stubs do not type extra keyword arguments of a batch function
    parsed = files.map_batches(
        parse,
        fn_kwargs={
            "cfg": cfg.ingest,
            "uri": root if is_object_store(root) else None,
            "origin": origin,
            "tenant": placement.tenant,
            "groups": placement.groups,
        },
        concurrency=rcfg.parse_concurrency,
        num_cpus=1,
    ).materialize()  # planning needs every file's hash; the chunks wait in the object store
    digests, failed = [], []
    for row in parsed.map_batches(file_rows, batch_format="pyarrow").iter_rows():
        if row["error"]:
            failed.append((row["source"], row["error"]))
        else:
            digests.append(FileDigest(row["source"], row["doc_hash"], row["n_chunks"]))
    return parsed, digests, failed


def _finish_as_written(
    written: Any,
    store: MilvusStore,
    plan: IngestPlan[FileDigest],
    report: IngestReport,
    progress: Progress | None,
    access: Access,
) -> None:
    """Consume the writers' output; a file is finished (stale versions deleted) once all its chunks are in."""
    pending: dict[str, tuple[FileDigest, set[int]]] = {f.source: (f, set()) for f in plan.write}
    total = sum(f.n_chunks for f in plan.write)
    done = 0
    for batch in written.iter_batches(batch_format="numpy", batch_size=None):
        before = done
        for source, index in zip(batch["source"], batch["chunk_index"], strict=True):
            entry = pending.get(str(source))
            if entry is None or int(index) in entry[1]:
                continue  # a retried block written twice: upserts are idempotent, count it once
            entry[1].add(int(index))
            done += 1
            if len(entry[1]) == entry[0].n_chunks:
                finish_file(store, plan, entry[0], report, access)
                metrics.INGESTED_DOCUMENTS.inc()
                del pending[str(source)]
        metrics.INGESTED_CHUNKS.inc(done - before)
        log.info("wrote %d/%d chunks", done, total)
        if progress is not None:
            progress(done, total)
    if pending:  # Ray Data completed without error, so this is a bug, not a crash: say so loudly
        raise RuntimeError(f"{len(pending)} files were not completely written: {sorted(pending)[:5]}")
