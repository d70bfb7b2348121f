"""MilvusStore: writes, reads and search on a ragserve collection, over its connection and schema
(store/connection.py, store/schema.py); one class for Milvus Lite and a Milvus server.

Every read, count and delete of chunks takes an ``Access`` and sends ``filters.restricted(access, ...)``,
so a client's filter narrows what a caller may see and never widens it; both requests of a hybrid search
carry it (a pre-filter: top_k is full of visible chunks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

from ragserve.config import AppConfig
from ragserve.limits import MAX_SOURCE_BYTES
from ragserve.store.connection import STRONG
from ragserve.store.filters import (
    DEFAULT_TENANT,
    GROUP_KEYS_FIELD,
    Access,
    Filter,
    compile_filter,
    group_keys,
    quote,
    restricted,
    stale_chunks,
)
from ragserve.store.schema import (
    ACCESS_REBUILD_HINT,
    GROUPS_FIELD,
    MAX_CHUNK_BYTES,
    MAX_TITLE_BYTES,
    ORIGIN_FIELD,
    PRUNE_REBUILD_HINT,
    REBUILD_HINT,
    SPARSE_FIELD,
    TENANT_FIELD,
    TEXT_FIELD,
    VECTOR_FIELD,
    Schema,
    SchemaMismatchError,
)

OUTPUT_FIELDS = ["source", "title", "chunk", "chunk_index", "doc_hash"]


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    source: str
    title: str
    chunk: str
    chunk_index: int
    doc_hash: str
    breadcrumb: str = ""  # "Title > Section > ..." of the chunk (the title alone without structure)
    origin: str = ""  # ORIGIN_FIELD: the ingest run's root or base URL, or API_ORIGIN
    tenant: str = DEFAULT_TENANT
    groups: tuple[str, ...] = ()  # empty: visible to the whole tenant

    @property
    def search_text(self) -> str:
        """What is embedded and what BM25 indexes: the breadcrumb gives a chunk its context."""
        return f"{self.breadcrumb}\n{self.chunk}" if self.breadcrumb else self.chunk


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # the ranking's own score: cosine (dense), fused RRF or weighted score (hybrid)
    source: str
    title: str
    chunk: str
    chunk_index: int
    similarity: float = 0.0  # cosine between the query and the chunk vectors, whatever the mode


def _hits(found: Iterable[dict[str, Any]], query: np.ndarray) -> list[Hit]:
    """Milvus results as Hits, each with its cosine similarity to the (normalized) query vector."""
    hits = []
    for h in found:
        entity = h["entity"]
        vector = np.asarray(entity[VECTOR_FIELD], dtype=np.float32)
        norm = float(np.linalg.norm(vector) * np.linalg.norm(query)) or 1.0
        hits.append(
            Hit(
                id=str(h["id"]),
                score=float(h["distance"]),
                source=entity["source"],
                title=entity["title"],
                chunk=entity["chunk"],
                chunk_index=int(entity["chunk_index"]),
                similarity=float(np.dot(vector, query)) / norm,
            )
        )
    return hits


def _clip(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", errors="ignore")


class MilvusStore(Schema):
    @classmethod
    def for_app(
        cls, cfg: AppConfig, uri: str | None = None, locate: Callable[[], str] | None = None
    ) -> MilvusStore:
        """The store as the application uses it (``uri`` replaces store.uri, e.g. the Lite owner's)."""
        store_cfg = cfg.store.model_copy(update={"uri": uri}) if uri else cfg.store
        return cls(store_cfg, require_bm25=cfg.retrieval.mode == "hybrid", locate=locate)

    # ---- writes -------------------------------------------------------------------------------------
    def upsert(self, records: Sequence[ChunkRecord], vectors: np.ndarray) -> int:
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        rows = [
            {
                "id": r.id,
                "source": r.source,  # checked whole at every entry point (limits.check_source), never cut
                "title": _clip(r.title, MAX_TITLE_BYTES),
                "chunk": _clip(r.chunk, MAX_CHUNK_BYTES),
                "chunk_index": r.chunk_index,
                "doc_hash": r.doc_hash,
                **({ORIGIN_FIELD: _clip(r.origin, MAX_SOURCE_BYTES)} if self.has_origin else {}),
                TENANT_FIELD: r.tenant,
                GROUPS_FIELD: list(r.groups),
                **({GROUP_KEYS_FIELD: group_keys(r.groups)} if self.has_group_keys else {}),
                VECTOR_FIELD: v,
                **({TEXT_FIELD: _clip(r.search_text, MAX_CHUNK_BYTES)} if self.has_sparse else {}),
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

    def delete(self, where: Filter, *, access: Access) -> int:
        """Delete the chunks ``where`` selects among those ``access`` may see (a filter is required: never
        a whole tenant)."""
        expr = compile_filter(where)
        if not expr:
            raise ValueError("delete needs a non-empty filter")
        return self._delete(self._restricted(access, expr))

    def delete_stale(self, source: str, keep_hash: str, *, access: Access) -> int:
        """Delete the chunks of ``source`` written from any version other than ``keep_hash``."""
        return self._delete(self._restricted(access, stale_chunks(source, keep_hash)))

    def _restricted(self, access: Access, expr: str = "") -> str:
        """filters.restricted for this collection: its groups as keys when it has them."""
        return restricted(access, expr, keys=self.has_group_keys)

    def _delete(self, expr: str) -> int:
        res = self._rpc(
            "delete", self.client.delete, self.collection, filter=expr, timeout=self.cfg.timeout_s
        )
        count = res.get("delete_count", 0) if isinstance(res, dict) else len(res)
        return int(count)

    def count(self, where: Filter | None = None, *, access: Access, latest: bool = False) -> int:
        """Chunks ``where`` selects among those ``access`` may see. ``latest``: see every write
        acknowledged so far (Strong), whatever store.consistency_level says; for reads that decide a write
        or a delete."""
        return self._count(self._restricted(access, compile_filter(where)), latest=latest)

    def collection_chunks(self, *, outside: str | None = None) -> int:
        """The operator's count for a rebuild, which replaces the whole collection: every chunk, or those
        of tenants other than ``outside`` (a collection from before tenants holds the default tenant's
        only). Never a caller's view: requests go through ``count``."""
        if not self.has_collection():
            return 0
        desc = self._rpc("describe_collection", self.client.describe_collection, self.collection)
        tenants = any(f["name"] == TENANT_FIELD for f in desc.get("fields", []))
        self.load()
        if outside is None:
            return self._count("", latest=True)
        if not tenants:
            return 0 if outside == DEFAULT_TENANT else self._count("", latest=True)
        return self._count(f"{TENANT_FIELD} != {quote(outside)}", latest=True)

    def _count(self, expr: str, *, latest: bool = False) -> int:
        rows = self._read(
            "count",
            self.client.query,
            self.collection,
            filter=expr,
            output_fields=["count(*)"],
            consistency_level=STRONG if latest else self.cfg.consistency_level,
            timeout=self.cfg.timeout_s,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    # ---- reads --------------------------------------------------------------------------------------
    def document_index(self, where: Filter | None = None, *, access: Access) -> dict[str, dict[str, int]]:
        """source -> {doc_hash: chunk count} of the documents ``access`` may see: what ingestion plans
        against to skip unchanged files. Read at Strong consistency: under Bounded, a document written a
        moment ago would look absent and its re-post would keep both versions."""
        index: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        expr = self._restricted(access, compile_filter(where))
        for row in self._iterate(["source", "doc_hash"], expr, latest=True):
            index[row["source"]][row["doc_hash"]] += 1
        return {s: dict(h) for s, h in index.items()}

    def sources_of_origin(self, origin: str, *, access: Access) -> set[str]:
        """The sources last written by an ingest run of ``origin`` (its root or base URL) among those
        ``access`` may see, read at Strong consistency: what that run may prune."""
        if not self.has_origin:
            raise SchemaMismatchError(f"collection {self.collection!r}: {PRUNE_REBUILD_HINT}")
        expr = self._restricted(access, f"{ORIGIN_FIELD} == {quote(origin)}")
        return {row["source"] for row in self._iterate(["source"], expr, latest=True)}

    def _iterate(
        self, fields: list[str], expr: str = "", batch_size: int = 1000, *, latest: bool = False
    ) -> Iterable[dict[str, Any]]:
        if latest:
            # A Strong query first waits until the query nodes hold every acknowledged write; the iterator
            # then reads at its usual level and sees them. (Strong on the iterator itself is no substitute:
            # a server older than 2.4 gives it no session timestamp, and it then read nothing here.)
            self._rpc(
                "query",
                self.client.query,
                self.collection,
                filter=expr,
                output_fields=["count(*)"],
                consistency_level=STRONG,
                timeout=self.cfg.timeout_s,
            )
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

    def search(
        self, vectors: np.ndarray, top_k: int, where: Filter | None = None, *, access: Access
    ) -> list[list[Hit]]:
        """Dense search among the chunks ``access`` may see: one ranking per query vector, scored by the
        collection's metric."""
        queries = vectors.astype(np.float32, copy=False)
        results = self._read(
            "search",
            self.client.search,
            self.collection,
            data=list(queries),
            anns_field=VECTOR_FIELD,
            limit=top_k,
            filter=self._restricted(access, compile_filter(where)),
            output_fields=[*OUTPUT_FIELDS, VECTOR_FIELD],
            search_params={"metric_type": self.cfg.metric, "params": dict(self.cfg.search_params)},
            consistency_level=self.cfg.consistency_level,
            timeout=self.cfg.timeout_s,
        )
        return [_hits(hits, q) for hits, q in zip(results, queries, strict=True)]

    def hybrid_search(
        self,
        vector: np.ndarray,
        text: str,
        top_k: int,
        where: Filter | None = None,
        *,
        access: Access,
        candidates: int = 50,
        fusion: str = "rrf",
        rrf_k: int = 60,
        dense_weight: float = 0.5,
    ) -> list[Hit]:
        """Dense + BM25 in one call: each list brings ``candidates`` chunks (same filter, both restricted to
        what ``access`` may see), fused to top_k."""
        if not self.has_sparse:
            raise SchemaMismatchError(f"collection {self.collection!r} has no BM25 field: {REBUILD_HINT}")
        expr = self._restricted(access, compile_filter(where))
        limit = max(candidates, top_k)
        query = vector.astype(np.float32, copy=False)
        requests = [
            AnnSearchRequest(
                data=[query],
                anns_field=VECTOR_FIELD,
                param={"metric_type": self.cfg.metric, "params": dict(self.cfg.search_params)},
                limit=limit,
                expr=expr,
            ),
            AnnSearchRequest(
                data=[text], anns_field=SPARSE_FIELD, param={"metric_type": "BM25"}, limit=limit, expr=expr
            ),
        ]
        ranker = RRFRanker(rrf_k) if fusion == "rrf" else WeightedRanker(dense_weight, 1.0 - dense_weight)
        results = self._read(
            "hybrid_search",
            self.client.hybrid_search,
            self.collection,
            requests,
            ranker=ranker,
            limit=top_k,
            output_fields=[*OUTPUT_FIELDS, VECTOR_FIELD],
            consistency_level=self.cfg.consistency_level,
            timeout=self.cfg.timeout_s,
        )
        return _hits(results[0], query)

    def stats(self, *, access: Access) -> dict[str, Any]:
        """The chunks and documents ``access`` may see, in two count queries whatever the collection's size
        (no scan through the client). A document is counted by its first chunk, so one caught between its
        old and new version counts twice until the old one is deleted."""
        if not self.has_collection():
            return {"collection": self.collection, "exists": False, "chunks": 0, "documents": 0}
        desc = self._rpc("describe_collection", self.client.describe_collection, self.collection)
        if not any(f["name"] == TENANT_FIELD for f in desc.get("fields", [])):
            raise SchemaMismatchError(f"collection {self.collection!r}: {ACCESS_REBUILD_HINT}")
        self.load()
        return {
            "collection": self.collection,
            "exists": True,
            "chunks": self._count(self._restricted(access)),
            "documents": self._count(self._restricted(access, "chunk_index == 0")),
            "uri": self.cfg.uri
            if self.cfg.is_lite
            else self.cfg.uri.split("@")[-1]
            if self.cfg.uri
            else None,
        }


__all__ = ["ChunkRecord", "Hit", "MilvusStore"]
