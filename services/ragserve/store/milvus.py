"""MilvusStore: one class for Milvus Lite (a *.db file) and a Milvus server (http(s) URI + token).

Collections hold, per chunk: the text shown to users, its source and position, the dense vector, and a
``search_text`` (heading breadcrumb + chunk) that Milvus' BM25 function turns into a sparse vector on insert,
so hybrid search (dense + BM25, fused by RRF or weights) is one ``hybrid_search`` call on Lite and on a
Milvus 2.5+ server alike. A collection created before that (no BM25 field) still serves dense search and is
refused for hybrid with the command that rebuilds it. A server older than 2.5 (no BM25 function, no sparse
vectors) gets dense-only collections: ``retrieval.mode: dense`` works on it, hybrid is refused up front.

Every chunk belongs to a ``tenant`` and may carry ``groups``. Every read, count and delete of chunks takes
an ``Access`` and sends ``filters.restricted(access, ...)``, so a client's filter narrows what a caller may
see and never widens it; both requests of a hybrid search carry it (a pre-filter: top_k is full of visible
chunks). The tenant is a partition key (one collection serves many tenants, a search touching only its
tenant's partitions) on Milvus Lite and 2.5+ servers; on a 2.3 server an upserted row lost its partition
(``tenant == "a"`` then matched nothing, checked on 2.3.5), so there it is a plain field, filtered alike.
A collection created before tenants is refused with the command that rebuilds it, and so is a BM25 one
created before ``filters.GROUP_KEYS_FIELD`` (the groups as one string: an array is slow to filter on Lite).
"""

from __future__ import annotations

import copy
import fcntl
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import (
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
)

from ragserve.config import AppConfig, StoreConfig
from ragserve.limits import MAX_SOURCE_BYTES
from ragserve.store.filters import (
    DEFAULT_TENANT,
    GROUP_KEYS_FIELD,
    MAX_GROUP_BYTES,
    MAX_GROUP_KEYS_BYTES,
    MAX_GROUPS,
    MAX_TENANT_BYTES,
    Access,
    Filter,
    compile_filter,
    group_keys,
    quote,
    restricted,
    stale_chunks,
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
OUTPUT_FIELDS = ["source", "title", "chunk", "chunk_index", "doc_hash"]
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
STRONG = "Strong"  # the consistency level of reads that plan writes and deletes
BM25_SINCE = (2, 5)  # the first Milvus server release with BM25 functions and sparse-vector indexes
# A read that meets the collection's name mid-switch (a rebuild renaming a pre-alias collection away, a
# proxy still caching the collection it named) waits this long between tries instead of failing the request.
SWITCH_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)
# "incomplete query result": a 2.3 server searched the previous collection and fetched the hits' fields
# after it was dropped.
_SWITCHING = re.compile(
    r"not exist|not found|can't find|released|loading|not loaded|incomplete query result", re.IGNORECASE
)


def server_has_bm25(version: str) -> bool:
    """``version`` as get_server_version() reports it: "v2.3.5-lite" (server), "milvus_lite-3.2.2" (Lite)."""
    m = re.match(r"v(\d+)\.(\d+)", version)
    return m is None or (int(m[1]), int(m[2])) >= BM25_SINCE


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


def lite_locked(path: Path) -> bool:
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


class MilvusStore:
    def __init__(
        self,
        cfg: StoreConfig,
        *,
        require_bm25: bool = False,
        locate: Callable[[], str] | None = None,
    ):
        """``require_bm25``: hybrid retrieval is configured, so a collection without the BM25 field is
        refused (with the command that rebuilds it) instead of silently serving dense results only.

        ``locate``: returns the server's URI now, waiting while it restarts (a Milvus Lite owner replaced
        by a rollout listens on a new port). A failed call asks it once; when the server has moved, the
        store reconnects and retries the call there, so a rollout costs latency, not errors."""
        if cfg.uri is None:
            raise StoreError("store.uri is not set")
        self.cfg = cfg
        self._locate = locate
        self._moving = threading.Lock()
        self.collection = cfg.collection
        self.require_bm25 = require_bm25
        self.has_sparse = False  # the collection has the BM25 field (known after ensure_collection)
        self.has_origin = False  # the collection records each document's origin (ORIGIN_FIELD)
        self.has_access = False  # the collection has the tenant and groups fields (refused without)
        self.has_group_keys = False  # ... and GROUP_KEYS_FIELD (all but a 2.3 server's): matched, not groups
        # The Milvus Lite file (None for a server URI).
        self.lite_path = Path(cfg.uri).expanduser() if cfg.is_lite else None
        if self.lite_path is not None:
            self.lite_path.parent.mkdir(parents=True, exist_ok=True)
        self.client = self._connect(cfg)
        self._owns_client = True

    def view(self, collection: str) -> MilvusStore:
        """The same connection, working on another collection (a rebuild's new one): closing the view
        leaves the connection to its owner."""
        other = copy.copy(self)
        other.cfg = self.cfg.model_copy(update={"collection": collection})
        other.collection = collection
        other.has_sparse = other.has_origin = other.has_group_keys = False  # learnt by its ensure_collection
        other._owns_client = False
        return other

    def _connect(self, cfg: StoreConfig) -> MilvusClient:
        token = cfg.token.get_secret_value() if cfg.token else ""
        try:
            return MilvusClient(
                uri=str(self.lite_path or cfg.uri),
                token=token,
                db_name=cfg.db_name,
                timeout=cfg.timeout_s,
            )
        except Exception as err:  # pymilvus raises several unrelated types on connect
            if self.lite_path is not None and lite_locked(self.lite_path):
                raise StoreError(
                    f"the Milvus Lite file {cfg.uri} is in use by another process (a running "
                    "`ragserve serve` or ingest); wait for it, or send documents to POST /v1/documents"
                ) from err
            raise StoreError(f"cannot connect to Milvus at {cfg.uri}: {err}") from err

    def reconnect(self, uri: str) -> None:
        """Talk to the same Milvus at another server URI from now on (a restarted Milvus Lite owner listens
        on a new port); calls already running on the old connection fail as they would have anyway."""
        if self.lite_path is not None:
            raise StoreError("a Milvus Lite file is opened in place, not reconnected")
        cfg = self.cfg.model_copy(update={"uri": uri})
        client = self._connect(cfg)
        # Loaded before other threads see the new client (a search there before would fail "not loaded");
        # straight calls, not _rpc: a failure here must not ask locate() again from inside follow().
        if self._call("has_collection", client.has_collection, self.collection):
            self._call("load", client.load_collection, self.collection)
        old, self.client, self.cfg = self.client, client, cfg
        try:
            old.close()
        except Exception:  # the old server is gone: nothing to close cleanly
            log.debug("error closing the previous Milvus client", exc_info=True)

    def follow(self, since: str | None = None) -> bool:
        """Ask ``locate`` where the server is and reconnect if it moved. ``since``: the URI a failed call
        used (another thread may have followed already). True when the URI differs from ``since``."""
        if self._locate is None:
            return False
        since = since or self.cfg.uri
        try:
            uri = self._locate()
        except Exception:  # the owner is still restarting, or gone: the caller's error stands
            log.info("cannot locate the Milvus server", exc_info=True)
            return False
        with self._moving:
            if uri != self.cfg.uri:
                log.info("the Milvus server moved from %s to %s: reconnecting", self.cfg.uri, uri)
                self.reconnect(uri)
        return uri != since

    @classmethod
    def for_app(
        cls, cfg: AppConfig, uri: str | None = None, locate: Callable[[], str] | None = None
    ) -> MilvusStore:
        """The store as the application uses it (``uri`` replaces store.uri, e.g. the Lite owner's)."""
        store_cfg = cfg.store.model_copy(update={"uri": uri}) if uri else cfg.store
        return cls(store_cfg, require_bm25=cfg.retrieval.mode == "hybrid", locate=locate)

    def _rpc(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (usually a method of ``self.client``); failures become StoreError naming the
        operation. With ``locate``, a client method that failed because the server moved is called once
        more, on the new client (an iterator's ``next`` is not: its cursor lived on the old server)."""
        uri, client = self.cfg.uri, self.client
        try:
            return self._call(what, fn, *args, **kwargs)
        except StoreError:
            if getattr(fn, "__self__", None) is not client or not self.follow(since=uri):
                raise
            return self._call(what, getattr(self.client, fn.__name__), *args, **kwargs)

    def _read(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``_rpc`` for a read that may meet the collection's name mid-switch: a rebuild's alias switch
        (store/rebuild.py) can leave the name unresolved for a few milliseconds, and a proxy may still hold
        the dropped collection it named. Such errors are retried for about 1.5 s; any other one is not."""
        for delay in SWITCH_RETRY_DELAYS_S:
            try:
                return self._rpc(what, fn, *args, **kwargs)
            except StoreError as err:
                if not _SWITCHING.search(str(err)):
                    raise
                log.info("Milvus %s on %r: retrying in %.2f s (%s)", what, self.collection, delay, err)
                time.sleep(delay)
        return self._rpc(what, fn, *args, **kwargs)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MilvusException as err:
            raise StoreError(f"Milvus {what} on {self.collection!r} failed: {err.message}") from err
        except (ConnectionError, TimeoutError, OSError) as err:
            raise StoreError(f"Milvus {what} on {self.collection!r} failed: {err}") from err

    # ---- schema -------------------------------------------------------------------------------------
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

    def has_collection(self) -> bool:
        return bool(self._rpc("has_collection", self.client.has_collection, self.collection))

    def load(self) -> None:
        """Load the collection for reads (a restarted Milvus holds it released)."""
        self._rpc("load", self.client.load_collection, self.collection)

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

    def close(self) -> None:
        if not self._owns_client:  # a view: the connection is its owner's
            return
        try:
            self.client.close()
            if (
                self.lite_path is not None
            ):  # pymilvus keeps an in-process Lite server (and its lock) until exit
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(self.lite_path))
        except Exception:  # closing a dead connection must not mask the real error
            log.debug("error closing Milvus client", exc_info=True)


__all__ = ["Access", "ChunkRecord", "Filter", "Hit", "MilvusStore", "SchemaMismatchError", "StoreError"]
