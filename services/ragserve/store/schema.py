"""The collection's schema, and the checks that an existing collection fits this configuration.

Collections hold, per chunk: the text shown to users, its source and position, the dense vector, and a
``search_text`` (heading breadcrumb + chunk) that Milvus' BM25 function turns into a sparse vector on insert,
so hybrid search (dense + BM25, fused by RRF or weights) is one ``hybrid_search`` call on Lite and on a
Milvus 2.5+ server alike. A collection created before that (no BM25 field) still serves dense search and is
refused for hybrid with the command that rebuilds it. A server older than 2.5 (no BM25 function, no sparse
vectors) gets dense-only collections: ``retrieval.mode: dense`` works on it, hybrid is refused up front.

Every chunk belongs to a ``tenant`` and may carry ``groups``. The tenant is a partition key (one collection
serves many tenants, a search touching only its tenant's partitions) on Milvus Lite and 2.5+ servers; on a
2.3 server an upserted row lost its partition (``tenant == "a"`` then matched nothing, checked on 2.3.5), so
there it is a plain field, filtered alike. A collection created before tenants is refused with the command
that rebuilds it, and so is a BM25 one created before ``filters.GROUP_KEYS_FIELD`` (the groups as one
string: an array is slow to filter on Lite).
"""

from __future__ import annotations

import logging
import re

from pymilvus import DataType, Function, FunctionType

from ragserve.limits import MAX_SOURCE_BYTES
from ragserve.store.connection import Connection, StoreError
from ragserve.store.filters import (
    GROUP_KEYS_FIELD,
    MAX_GROUP_BYTES,
    MAX_GROUP_KEYS_BYTES,
    MAX_GROUPS,
    MAX_TENANT_BYTES,
)

log = logging.getLogger(__name__)

VECTOR_FIELD = "vector"
TEXT_FIELD = "search_text"  # breadcrumb + chunk: BM25's input
SPARSE_FIELD = "sparse"  # BM25 output, filled by Milvus on insert
# Who wrote a document: the root or base URL of the ingest run, or "api". `ingest --prune` deletes only the
# sources of its own origin, so documents posted through the API or ingested from another folder survive.
ORIGIN_FIELD = "origin"
API_ORIGIN = "api"
PRUNE_REBUILD_HINT = (
    "it predates ownership records, so --prune cannot tell which documents this run owns: rebuild it with "
    "`ragserve ingest PATH --rebuild`, or run without --prune"
)
TENANT_FIELD = "tenant"  # the partition key (see the module's docstring for servers before 2.5)
GROUPS_FIELD = "groups"  # ARRAY<VARCHAR>: empty = the whole tenant may read the chunk
ACCESS_REBUILD_HINT = (
    "it predates tenants and groups (every read is restricted by them): rebuild it with "
    "`ragserve ingest PATH --rebuild` (its documents then belong to the default tenant, without groups)"
)
GROUP_KEYS_REBUILD_HINT = (
    f"it predates the {GROUP_KEYS_FIELD} field (what the groups restriction matches): rebuild it with "
    "`ragserve ingest PATH --rebuild`"
)
# Lowercased words, English stop words removed, Snowball-stemmed. Identifiers survive as tokens: the
# standard tokenizer keeps `IVF_SQ8` and `io_setup` whole and splits `mmap.enabled` into its words.
BM25_ANALYZER = {
    "tokenizer": "standard",
    "filter": [
        "lowercase",
        {"type": "stop", "stop_words": ["_english_"]},
        {"type": "stemmer", "language": "english"},
    ],
}
REBUILD_HINT = "rebuild it with `ragserve ingest PATH --rebuild`, or set retrieval.mode: dense"
MAX_CHUNK_BYTES = 65535
MAX_TITLE_BYTES = 1024
EMBEDDER_PROPERTY = "ragserve.embedder"
BM25_SINCE = (2, 5)  # the first Milvus server release with BM25 functions and sparse-vector indexes


def server_has_bm25(version: str) -> bool:
    """``version`` as get_server_version() reports it: "v2.3.5-lite" (server), "milvus_lite-3.2.2" (Lite)."""
    m = re.match(r"v(\d+)\.(\d+)", version)
    return m is None or (int(m[1]), int(m[2])) >= BM25_SINCE


class SchemaMismatchError(StoreError):
    """The existing collection was built for another embedder (dimension, metric or model)."""


class Schema(Connection):
    """Creating the collection, checking an existing one, dropping it (through its alias)."""

    def ensure_collection(self, dim: int, embedder_model: str) -> None:
        """Create the collection, or check that the existing one matches this embedder (and has the BM25
        field when ``require_bm25``)."""
        if self.has_collection():
            self._check_compatible(dim, embedder_model)
            self._rpc("load", self.client.load_collection, self.collection)
            return
        version = str(self._rpc("get_server_version", self.client.get_server_version))
        with_bm25 = server_has_bm25(version)
        if self.require_bm25 and not with_bm25:
            raise SchemaMismatchError(
                f"Milvus {version} at {self.cfg.uri} has no BM25 function (Milvus 2.5+), which hybrid "
                "retrieval needs: set retrieval.mode: dense or use Milvus 2.5 or later"
            )
        schema = self.client.create_schema(
            auto_id=False, enable_dynamic_field=False, description="ragserve chunks"
        )
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE_BYTES)
        schema.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
        schema.add_field("chunk", DataType.VARCHAR, max_length=MAX_CHUNK_BYTES)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        schema.add_field(ORIGIN_FIELD, DataType.VARCHAR, max_length=MAX_SOURCE_BYTES)
        schema.add_field(
            TENANT_FIELD, DataType.VARCHAR, max_length=MAX_TENANT_BYTES, is_partition_key=with_bm25
        )
        schema.add_field(
            GROUPS_FIELD,
            DataType.ARRAY,
            element_type=DataType.VARCHAR,
            max_capacity=MAX_GROUPS,
            max_length=MAX_GROUP_BYTES,
        )
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name=VECTOR_FIELD,
            index_type=self.cfg.index_type,
            metric_type=self.cfg.metric,
            params=dict(self.cfg.index_params),
        )
        if with_bm25:
            schema.add_field(
                TEXT_FIELD,
                DataType.VARCHAR,
                max_length=MAX_CHUNK_BYTES,
                enable_analyzer=True,
                analyzer_params=BM25_ANALYZER,
            )
            schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name="bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=[TEXT_FIELD],
                    output_field_names=[SPARSE_FIELD],
                )
            )
            index.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            schema.add_field(GROUP_KEYS_FIELD, DataType.VARCHAR, max_length=MAX_GROUP_KEYS_BYTES)
        try:
            self._rpc(
                "create_collection",
                self.client.create_collection,
                self.collection,
                schema=schema,
                index_params=index,
                consistency_level=self.cfg.consistency_level,
            )
        except StoreError:
            if not self.has_collection():
                raise
            # Another writer (distributed ingestion) created it between our check and our create.
            self._check_compatible(dim, embedder_model)
            self._rpc("load", self.client.load_collection, self.collection)
            return
        self._rpc(
            "alter_collection_properties",
            self.client.alter_collection_properties,
            self.collection,
            properties={EMBEDDER_PROPERTY: embedder_model},
        )
        self.has_sparse = self.has_group_keys = with_bm25
        self.has_origin = self.has_access = True
        log.info(
            "created collection %s (dim=%d, %s, %s, %s)",
            self.collection,
            dim,
            self.cfg.index_type,
            self.cfg.metric,
            "dense + BM25" if with_bm25 else f"dense only: Milvus {version} has no BM25",
        )

    def _check_compatible(self, dim: int, embedder_model: str) -> None:
        desc = self._rpc("describe_collection", self.client.describe_collection, self.collection)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        self.has_sparse = SPARSE_FIELD in fields and TEXT_FIELD in fields
        self.has_origin = ORIGIN_FIELD in fields
        self.has_access = TENANT_FIELD in fields and GROUPS_FIELD in fields
        self.has_group_keys = GROUP_KEYS_FIELD in fields
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
        if self.require_bm25 and not self.has_sparse:
            raise SchemaMismatchError(
                f"collection {self.collection!r} has no BM25 field (it was created for dense search only) "
                f"and retrieval.mode is hybrid: {REBUILD_HINT}"
            )
        if not self.has_access:
            raise SchemaMismatchError(f"collection {self.collection!r}: {ACCESS_REBUILD_HINT}")
        if self.has_sparse and not self.has_group_keys:
            raise SchemaMismatchError(f"collection {self.collection!r}: {GROUP_KEYS_REBUILD_HINT}")

    def vector_dim(self) -> int | None:
        """The stored vectors' dimension (None: no collection), read without loading any embedder."""
        if not self.has_collection():
            return None
        desc = self._rpc("describe_collection", self.client.describe_collection, self.collection)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        return int(fields.get(VECTOR_FIELD, {}).get("params", {}).get("dim", -1))

    def _index_metric(self) -> str | None:
        for name in self._rpc("list_indexes", self.client.list_indexes, self.collection):
            info = self._rpc("describe_index", self.client.describe_index, self.collection, name)
            if info.get("field_name") == VECTOR_FIELD:
                return str(info.get("metric_type")) if info.get("metric_type") else None
        return None

    def alias_target(self) -> str | None:
        """The collection that store.collection names when it is an alias (after a rebuild), else None."""
        listed = self._rpc("list_aliases", self.client.list_aliases)
        if self.collection not in (listed.get("aliases") or []):
            return None
        desc = self._rpc("describe_alias", self.client.describe_alias, self.collection)
        return str(desc["collection_name"])

    def drop(self) -> None:
        """Drop the collection; an alias goes first, then the collection behind it (a server refuses to
        drop through an alias, and dropping the collection first left a 2.3 server with a dangling alias)."""
        target = self.alias_target()
        if target is not None:
            self._rpc("drop_alias", self.client.drop_alias, self.collection)
            self._rpc("drop_collection", self.client.drop_collection, target)
        elif self.has_collection():
            self._rpc("drop_collection", self.client.drop_collection, self.collection)
