"""MilvusStore: one class for Milvus Lite (a *.db file) and a Milvus server (http(s) URI + token)."""

from __future__ import annotations

import fcntl
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from ragserve.config import StoreConfig
from ragserve.store.filters import Filter, compile_filter, stale_chunks

log = logging.getLogger(__name__)

VECTOR_FIELD = "vector"
OUTPUT_FIELDS = ["source", "title", "chunk", "chunk_index", "doc_hash"]
MAX_CHUNK_BYTES = 65535
MAX_SOURCE_BYTES = 2048
MAX_TITLE_BYTES = 1024
EMBEDDER_PROPERTY = "ragserve.embedder"


class StoreError(RuntimeError):
    """Milvus is unreachable or refused an operation."""


class SchemaMismatchError(StoreError):
    """The existing collection was built for another embedder (dimension, metric or model)."""


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    source: str
    title: str
    chunk: str
    chunk_index: int
    doc_hash: str


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: str
    title: str
    chunk: str
    chunk_index: int


def _lite_locked(path: Path) -> bool:
    """True when another process holds Milvus Lite's lock on ``path``."""
    lock = path / "LOCK"
    if not lock.exists():
        return False
    with lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _clip(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", errors="ignore")


class MilvusStore:
    def __init__(self, cfg: StoreConfig):
        if cfg.uri is None:
            raise StoreError("store.uri is not set")
        self.cfg = cfg
        self.collection = cfg.collection
        # The Milvus Lite file (None for a server URI).
        self.lite_path = Path(cfg.uri).expanduser() if cfg.is_lite else None
        if self.lite_path is not None:
            self.lite_path.parent.mkdir(parents=True, exist_ok=True)
        token = cfg.token.get_secret_value() if cfg.token else ""
        try:
            self.client = MilvusClient(
                uri=str(self.lite_path or cfg.uri),
                token=token,
                db_name=cfg.db_name,
                timeout=cfg.timeout_s,
            )
        except Exception as err:  # pymilvus raises several unrelated types on connect
            if self.lite_path is not None and _lite_locked(self.lite_path):
                raise StoreError(
                    f"the Milvus Lite file {cfg.uri} is in use by another process (a running "
                    "`ragserve serve` or ingest); wait for it, or send documents to POST /v1/documents"
                ) from err
            raise StoreError(f"cannot connect to Milvus at {cfg.uri}: {err}") from err

    def _rpc(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the client; Milvus and transport failures become StoreError naming the operation."""
        try:
            return fn(*args, **kwargs)
        except MilvusException as err:
            raise StoreError(f"Milvus {what} on {self.collection!r} failed: {err.message}") from err
        except (ConnectionError, TimeoutError, OSError) as err:
            raise StoreError(f"Milvus {what} on {self.collection!r} failed: {err}") from err

    # ---- schema -------------------------------------------------------------------------------------
    def ensure_collection(self, dim: int, embedder_model: str) -> None:
        """Create the collection, or check that the existing one matches this embedder."""
        if self.has_collection():
            self._check_compatible(dim, embedder_model)
            self._rpc("load", self.client.load_collection, self.collection)
            return
        schema = self.client.create_schema(
            auto_id=False, enable_dynamic_field=False, description="ragserve chunks"
        )
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE_BYTES)
        schema.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
        schema.add_field("chunk", DataType.VARCHAR, max_length=MAX_CHUNK_BYTES)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name=VECTOR_FIELD,
            index_type=self.cfg.index_type,
            metric_type=self.cfg.metric,
            params=dict(self.cfg.index_params),
        )
        self._rpc(
            "create_collection",
            self.client.create_collection,
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level=self.cfg.consistency_level,
        )
        self._rpc(
            "alter_collection_properties",
            self.client.alter_collection_properties,
            self.collection,
            properties={EMBEDDER_PROPERTY: embedder_model},
        )
        log.info(
            "created collection %s (dim=%d, %s, %s)",
            self.collection,
            dim,
            self.cfg.index_type,
            self.cfg.metric,
        )

    def _check_compatible(self, dim: int, embedder_model: str) -> None:
        desc = self._rpc("describe_collection", self.client.describe_collection, self.collection)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        vector = fields.get(VECTOR_FIELD)
        if vector is None or "doc_hash" not in fields:
            raise SchemaMismatchError(
                f"collection {self.collection!r} exists but was not created by ragserve "
                f"(fields: {sorted(fields)}); choose another store.collection"
            )
        have_dim = int(vector.get("params", {}).get("dim", -1))
        if have_dim != dim:
            raise SchemaMismatchError(
                f"collection {self.collection!r} stores {have_dim}-d vectors but the embedder "
                f"{embedder_model!r} produces {dim}-d vectors; use another store.collection or drop it"
            )
        metric = self._index_metric()
        if metric and metric != self.cfg.metric:
            raise SchemaMismatchError(
                f"collection {self.collection!r} is indexed with metric {metric} but store.metric is "
                f"{self.cfg.metric}; set store.metric: {metric} or use another collection"
            )
        have_model = (desc.get("properties") or {}).get(EMBEDDER_PROPERTY)
        if have_model and have_model != embedder_model:
            raise SchemaMismatchError(
                f"collection {self.collection!r} was built with embedder {have_model!r}, not "
                f"{embedder_model!r}: vectors from different models cannot be compared"
            )

    def _index_metric(self) -> str | None:
        for name in self._rpc("list_indexes", self.client.list_indexes, self.collection):
            info = self._rpc("describe_index", self.client.describe_index, self.collection, name)
            if info.get("field_name") == VECTOR_FIELD:
                return str(info.get("metric_type")) if info.get("metric_type") else None
        return None

    def has_collection(self) -> bool:
        return bool(self._rpc("has_collection", self.client.has_collection, self.collection))

    def load(self) -> None:
        """Load the collection for reads (a restarted Milvus holds it released)."""
        self._rpc("load", self.client.load_collection, self.collection)

    def drop(self) -> None:
        if self.has_collection():
            self._rpc("drop_collection", self.client.drop_collection, self.collection)

    # ---- writes -------------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ChunkRecord], vectors: np.ndarray) -> int:
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        rows = [
            {
                "id": r.id,
                "source": _clip(r.source, MAX_SOURCE_BYTES),
                "title": _clip(r.title, MAX_TITLE_BYTES),
                "chunk": _clip(r.chunk, MAX_CHUNK_BYTES),
                "chunk_index": r.chunk_index,
                "doc_hash": r.doc_hash,
                VECTOR_FIELD: v,
            }
            for r, v in zip(records, vectors.astype(np.float32, copy=False), strict=True)
        ]
        written = 0
        step = self.cfg.write_batch_size
        for start in range(0, len(rows), step):
            batch = rows[start : start + step]
            res = self._rpc("upsert", self.client.upsert, self.collection, batch, timeout=self.cfg.timeout_s)
            written += int(res.get("upsert_count", len(batch)))
        return written

    def delete(self, where: Filter) -> int:
        """Delete the chunks ``where`` selects (a filter is required: never the whole collection)."""
        expr = compile_filter(where)
        if not expr:
            raise ValueError("delete needs a non-empty filter")
        return self._delete(expr)

    def delete_stale(self, source: str, keep_hash: str) -> int:
        """Delete the chunks of ``source`` written from any version other than ``keep_hash``."""
        return self._delete(stale_chunks(source, keep_hash))

    def _delete(self, expr: str) -> int:
        res = self._rpc(
            "delete", self.client.delete, self.collection, filter=expr, timeout=self.cfg.timeout_s
        )
        count = res.get("delete_count", 0) if isinstance(res, dict) else len(res)
        return int(count)

    def count(self, where: Filter | None = None) -> int:
        rows = self._rpc(
            "count",
            self.client.query,
            self.collection,
            filter=compile_filter(where),
            output_fields=["count(*)"],
            consistency_level=self.cfg.consistency_level,
            timeout=self.cfg.timeout_s,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    # ---- reads --------------------------------------------------------------------------------------
    def document_index(self, where: Filter | None = None) -> dict[str, dict[str, int]]:
        """source -> {doc_hash: chunk count}: what ingestion compares against to skip unchanged files."""
        index: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in self._iterate(["source", "doc_hash"], compile_filter(where)):
            index[row["source"]][row["doc_hash"]] += 1
        return {s: dict(h) for s, h in index.items()}

    def _iterate(self, fields: list[str], expr: str = "", batch_size: int = 1000) -> Iterable[dict[str, Any]]:
        it = self._rpc(
            "query_iterator",
            self.client.query_iterator,
            self.collection,
            batch_size=batch_size,
            filter=expr,
            output_fields=fields,
            consistency_level=self.cfg.consistency_level,
            timeout=self.cfg.timeout_s,
        )
        try:
            while batch := self._rpc("query", it.next):
                yield from batch
        finally:
            it.close()

    def search(self, vectors: np.ndarray, top_k: int, where: Filter | None = None) -> list[list[Hit]]:
        results = self._rpc(
            "search",
            self.client.search,
            self.collection,
            data=[v for v in vectors.astype(np.float32, copy=False)],
            anns_field=VECTOR_FIELD,
            limit=top_k,
            filter=compile_filter(where),
            output_fields=OUTPUT_FIELDS,
            search_params={"metric_type": self.cfg.metric, "params": dict(self.cfg.search_params)},
            consistency_level=self.cfg.consistency_level,
            timeout=self.cfg.timeout_s,
        )
        return [
            [
                Hit(
                    id=str(h["id"]),
                    score=float(h["distance"]),
                    source=h["entity"]["source"],
                    title=h["entity"]["title"],
                    chunk=h["entity"]["chunk"],
                    chunk_index=int(h["entity"]["chunk_index"]),
                )
                for h in hits
            ]
            for hits in results
        ]

    def stats(self) -> dict[str, Any]:
        if not self.has_collection():
            return {"collection": self.collection, "exists": False, "chunks": 0, "documents": 0}
        self.load()
        docs = self.document_index()
        return {
            "collection": self.collection,
            "exists": True,
            "chunks": sum(sum(h.values()) for h in docs.values()),
            "documents": len(docs),
            "uri": self.cfg.uri
            if self.cfg.is_lite
            else self.cfg.uri.split("@")[-1]
            if self.cfg.uri
            else None,
        }

    def close(self) -> None:
        try:
            self.client.close()
            if (
                self.lite_path is not None
            ):  # pymilvus keeps an in-process Lite server (and its lock) until exit
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(self.lite_path))
        except Exception:  # closing a dead connection must not mask the real error
            log.debug("error closing Milvus client", exc_info=True)


__all__ = ["ChunkRecord", "Filter", "Hit", "MilvusStore", "SchemaMismatchError", "StoreError"]
