"""Ingestion on Ray Data: the local plan of pipeline.py with its stages run on a Ray cluster.

    discover (driver) -> read + parse + chunk (Ray Data tasks, materialized) -> plan (driver: one
    document_index, unchanged files skipped) -> embed (actor pool, model loaded once per actor) ->
    upsert (writer actors) -> delete stale (driver, per file, once all its new chunks are written)

Chunk ids, hashing, planning, the crash-safety rule and the report are pipeline.py's own functions, so a
``--ray`` run and a local run write the same collection. The driver learns which chunks are written from the
writers' output (source, chunk_index), so a file's old version is deleted only after its last new chunk
came back; a crash in between leaves both versions, which the next run finishes, as locally.

Milvus Lite: only one process may open the file, so with a Lite URI one actor on the driver's node owns it
and serves it over gRPC for the length of the job; the driver and the writers connect to its
``http://127.0.0.1:port`` exactly as to a Milvus server (one code path). That needs a single-node Ray; on a
cluster, use a Milvus server, which takes the writers' upserts in parallel.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ragserve import environment
from ragserve.config import AppConfig, EmbedderConfig, IngestConfig, IngestRayConfig, StoreConfig
from ragserve.ingest.loaders import LoaderError
from ragserve.ingest.pipeline import (
    IngestError,
    IngestPlan,
    IngestReport,
    Progress,
    discover,
    embed_text,
    finish_file,
    make_plan,
    make_splitter,
    open_collection,
    prepare,
    prune_gone,
    source_for,
)
from ragserve.observability import metrics
from ragserve.store.milvus import ChunkRecord, MilvusStore, StoreError, lite_locked

log = logging.getLogger(__name__)
LOCAL_START_ATTEMPTS = 3  # a new local Ray (no ADDRESS) is started again this often if it times out

# One row per chunk; a file that failed to load is one row with chunk_index -1 and its reason in `error`.
CHUNK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("chunk", pa.string()),
        ("chunk_index", pa.int32()),
        ("doc_hash", pa.string()),
        ("breadcrumb", pa.string()),
        ("n_chunks", pa.int32()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class FileDigest:
    """A parsed file as planning sees it (the chunks stay in Ray's object store)."""

    source: str
    doc_hash: str
    n_chunks: int


# ---- stages (run in Ray workers) -----------------------------------------------------------------------
def parse_files(batch: dict[str, np.ndarray], cfg: IngestConfig) -> pa.Table:
    """Read, clean and chunk files with pipeline.prepare; a LoaderError becomes an error row."""
    splitter = make_splitter(cfg)
    rows: dict[str, list[Any]] = {name: [] for name in CHUNK_SCHEMA.names}
    for path, source in zip(batch["path"], batch["source"], strict=True):
        try:
            records = prepare(Path(path), str(source), cfg, splitter).records()
        except LoaderError as err:
            failed = ChunkRecord("", str(source), "", "", -1, "")
            _append(rows, failed, n_chunks=0, error=str(err))
            continue
        for r in records:
            _append(rows, r, n_chunks=len(records), error="")
    return pa.Table.from_pydict(rows, schema=CHUNK_SCHEMA)


def _append(rows: dict[str, list[Any]], r: ChunkRecord, *, n_chunks: int, error: str) -> None:
    for name, value in (
        ("id", r.id),
        ("source", r.source),
        ("title", r.title),
        ("chunk", r.chunk),
        ("chunk_index", r.chunk_index),
        ("doc_hash", r.doc_hash),
        ("breadcrumb", r.breadcrumb),
        ("n_chunks", n_chunks),
        ("error", error),
    ):
        rows[name].append(value)


def file_rows(table: pa.Table) -> pa.Table:
    """One row per file (its first chunk, or its error row): what the driver plans with."""
    first = table.filter(pc.less_equal(table["chunk_index"], 0))
    return first.select(["source", "doc_hash", "n_chunks", "error"])


def chunks_of(table: pa.Table, sources: pa.Array) -> pa.Table:
    """The chunks of the files the plan writes."""
    keep = pc.and_(pc.is_in(table["source"], value_set=sources), pc.greater_equal(table["chunk_index"], 0))
    return table.filter(keep).drop_columns(["n_chunks", "error"])


def records_of(batch: dict[str, np.ndarray]) -> list[ChunkRecord]:
    return [
        ChunkRecord(str(i), str(s), str(t), str(c), int(n), str(h), str(b))
        for i, s, t, c, n, h, b in zip(
            batch["id"],
            batch["source"],
            batch["title"],
            batch["chunk"],
            batch["chunk_index"],
            batch["doc_hash"],
            batch["breadcrumb"],
            strict=True,
        )
    ]


def _load_encoder(embedder: EmbedderConfig, env: dict[str, str]) -> Any:
    for key, value in env.items():  # before the first transformers import in this worker
        os.environ.setdefault(key, value)
    from ragserve.embedder.encoder import Encoder

    return Encoder(embedder)


class EmbedChunks:
    """Embedding actor (map_batches callable class): loads the model once, adds a ``vector`` column."""

    def __init__(self, embedder: EmbedderConfig, env: dict[str, str], with_title: bool):
        self.encoder = _load_encoder(embedder, env)
        self.with_title = with_title

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [embed_text(r, self.with_title) for r in records_of(batch)]
        return {**batch, "vector": self.encoder.embed_documents(texts)}


class WriteChunks:
    """Writer actor: upserts embedded chunks and returns which ones are written (source, chunk_index)."""

    def __init__(self, store: StoreConfig, require_bm25: bool, model_name: str):
        self.store = MilvusStore(store, require_bm25=require_bm25)
        self.model_name = model_name
        self.checked = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = np.asarray(batch["vector"], dtype=np.float32)
        if not self.checked:  # the real vectors against the collection; also learns its BM25 field
            self.store.ensure_collection(vectors.shape[1], self.model_name)
            self.checked = True
        self.store.upsert(records_of(batch), vectors)
        return {"source": batch["source"], "chunk_index": batch["chunk_index"]}


def probe_encoder(embedder: EmbedderConfig, env: dict[str, str]) -> tuple[int, str]:
    """The embedder's dimension and name, found where the embedding actors run (it may need a GPU)."""
    encoder = _load_encoder(embedder, env)
    return encoder.dim, encoder.model_name


class LiteOwner:
    """The one process that opens a Milvus Lite file during a job; everyone else uses its URI."""

    def __init__(self, path: str):
        from ragserve.store.lite_server import LiteServer

        self.server = LiteServer(path)

    def uri(self) -> str:
        return self.server.uri

    def stop(self) -> None:
        self.server.stop()


# ---- driver ---------------------------------------------------------------------------------------------
def ingest_on_ray(
    cfg: AppConfig,
    root: Path,
    *,
    address: str | None = None,
    base_url: str | None = None,
    prune: bool = False,
    rebuild: bool = False,
    progress: Progress | None = None,
    show_progress: bool = False,
) -> IngestReport:
    """``ragserve ingest PATH --ray [ADDRESS]``: the local Ingestor's plan and report, on Ray Data.

    Uses the Ray this process is already connected to; otherwise starts a local one (``address`` None)
    or connects to ``address`` ("auto", "ray://head:10001") and disconnects at the end.
    ``show_progress``: Ray Data's own progress bars on stderr."""
    import ray

    if cfg.ingest.ray is None:
        raise IngestError("ingest.ray is not configured: set it in the config file (see the profiles)")
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
            return _run(cfg, cfg.ingest.ray, store, root, base_url, prune, rebuild, progress)
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

    for attempt in range(1 if address else LOCAL_START_ATTEMPTS):
        try:
            ray.init(address=address or "local", include_dashboard=False, configure_logging=False)
            return
        except Exception:  # Ray waits a fixed 30 s for its raylet; a loaded machine can miss that
            ray.shutdown()
            if attempt == LOCAL_START_ATTEMPTS - 1 or address:
                raise
            log.warning("local Ray did not start in time; trying again")


def _start_lite_owner(path: str) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    owner: Any = ray.remote(LiteOwner)
    return owner.options(num_cpus=0, max_restarts=0, scheduling_strategy=here).remote(path)


def _run(
    cfg: AppConfig,
    rcfg: IngestRayConfig,
    store: MilvusStore,
    root: Path,
    base_url: str | None,
    prune: bool,
    rebuild: bool,
    progress: Progress | None,
) -> IngestReport:
    import ray

    started = time.perf_counter()
    root = root.expanduser().resolve()
    paths, skipped = discover(root, cfg.ingest)
    if not paths:
        raise IngestError(f"no supported files under {root} (extensions: {', '.join(cfg.ingest.extensions)})")
    report = IngestReport(files=len(paths), files_skipped=skipped)
    order = {source_for(p, root, base_url): i for i, p in enumerate(paths)}

    files = ray.data.from_items(
        [{"path": str(p), "source": s} for p, s in zip(paths, order, strict=True)],
        override_num_blocks=min(len(paths), rcfg.parse_concurrency * 4),
    )
    parse: Any = parse_files  # Ray's stubs do not type extra keyword arguments of a batch function
    parsed = files.map_batches(
        parse, fn_kwargs={"cfg": cfg.ingest}, concurrency=rcfg.parse_concurrency, num_cpus=1
    ).materialize()  # planning needs every file's hash; the chunks wait in the object store
    digests, failed = [], []
    for row in parsed.map_batches(file_rows, batch_format="pyarrow").iter_rows():
        if row["error"]:
            failed.append((row["source"], row["error"]))
        else:
            digests.append(FileDigest(row["source"], row["doc_hash"], row["n_chunks"]))
    digests.sort(key=lambda f: order[f.source])
    for source, reason in sorted(failed, key=lambda f: order[f[0]]):
        log.warning("skipping %s: %s", source, reason)
        report.files_failed.append((source, reason))

    env = environment.process_env(cfg)
    gpu = {"num_cpus": rcfg.num_cpus_per_actor, "num_gpus": rcfg.num_gpus_per_actor}
    model_name = cfg.embedder.model
    dim = None if rebuild else store.vector_dim()
    if dim is None:  # a new collection needs the dimension: load the model once where the actors run
        probe: Any = ray.remote(probe_encoder)
        dim, model_name = ray.get(probe.options(**gpu).remote(cfg.embedder, env))
    # An existing collection is checked here (model, metric, BM25) and its dimension by each writer.
    open_collection(store, dim, model_name, rebuild, report)
    plan = make_plan(digests, store.document_index(), prune)
    report.files_unchanged = len(plan.unchanged)

    if plan.write:
        retry = {"max_restarts": rcfg.max_restarts, "max_task_retries": -1 if rcfg.max_restarts else 0}
        written = (
            parsed.map_batches(
                chunks_of,
                fn_args=[pa.array([f.source for f in plan.write])],
                batch_format="pyarrow",
                num_cpus=0,  # an Arrow filter: must not wait for a CPU the embedding actors hold
            )
            .map_batches(
                EmbedChunks,
                fn_constructor_args=(cfg.embedder, env, cfg.ingest.embed_title),
                batch_size=rcfg.embed_batch_size,
                concurrency=rcfg.embed_actors,
                **gpu,
                **retry,
            )
            .map_batches(
                WriteChunks,
                fn_constructor_args=(store.cfg, store.require_bm25, model_name),
                batch_size=cfg.store.write_batch_size,
                concurrency=rcfg.write_concurrency,
                num_cpus=0,  # waits on Milvus; must not take a CPU from the embedding actors
                **retry,
            )
        )
        _finish_as_written(written, store, plan, report, progress)
    prune_gone(store, plan, report)
    report.seconds = time.perf_counter() - started
    return report


def _finish_as_written(
    written: Any,
    store: MilvusStore,
    plan: IngestPlan[FileDigest],
    report: IngestReport,
    progress: Progress | None,
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
                finish_file(store, plan, entry[0], report)
                metrics.INGESTED_DOCUMENTS.inc()
                del pending[str(source)]
        metrics.INGESTED_CHUNKS.inc(done - before)
        log.info("wrote %d/%d chunks", done, total)
        if progress is not None:
            progress(done, total)
    if pending:  # Ray Data completed without error, so this is a bug, not a crash: say so loudly
        raise RuntimeError(f"{len(pending)} files were not completely written: {sorted(pending)[:5]}")
