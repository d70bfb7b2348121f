"""Hybrid retrieval on real Milvus Lite: dense + Milvus' BM25 function fused in one hybrid_search call,
filters applied to both lists, and a dense-only collection refused until it is rebuilt."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from ragserve.config import load_config
from ragserve.ingest.pipeline import Ingestor
from ragserve.retrieval import Retriever, local_query_embedder
from ragserve.store.filters import DEFAULT_ACCESS, Filter
from ragserve.store.milvus import MilvusStore
from ragserve.store.schema import EMBEDDER_PROPERTY, SchemaMismatchError
from tests.integration.test_cli import ragserve

pytestmark = pytest.mark.slow


def test_hybrid_search_fuses_dense_and_bm25_with_filters_on_both(
    corpus_subset: Path, encoder, tmp_path
) -> None:
    cfg = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    assert cfg.retrieval.mode == "hybrid"
    store = MilvusStore.for_app(cfg)
    Ingestor(encoder, store, cfg.ingest).run(corpus_subset)
    assert store.has_sparse
    hybrid = Retriever(local_query_embedder(encoder), store, cfg.retrieval)
    dense = Retriever(
        local_query_embedder(encoder), store, cfg.retrieval.model_copy(update={"mode": "dense"})
    )

    # An identifier only one page of the subset spells: BM25 puts that page on top.
    found = asyncio.run(hybrid.search("MaxDegree", 5)).hits
    assert found[0].source == "reference/disk_index.md" and "MaxDegree" in found[0].chunk
    scores = [h.score for h in found]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= h.similarity <= 1.0001 for h in found)
    # Each hit carries its cosine to the query, the same number dense search ranks by.
    top_dense = asyncio.run(dense.search("MaxDegree", 1)).hits[0]
    assert top_dense.similarity == pytest.approx(top_dense.score, abs=1e-4)

    only = asyncio.run(hybrid.search("IVF_SQ8 quantization", 5, Filter(("reference/metric.md",)))).hits
    assert only and {h.source for h in only} == {"reference/metric.md"}  # BM25's list is filtered too
    store.close()


def legacy_collection(uri: str, name: str, model: str, dim: int, tenants: bool = False) -> None:
    """A collection as ragserve created it before hybrid search: no search_text, no BM25 field; and before
    tenants and groups unless ``tenants``."""
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    for field in ("source", "title", "doc_hash"):
        schema.add_field(field, DataType.VARCHAR, max_length=1024)
    schema.add_field("chunk", DataType.VARCHAR, max_length=65535)
    schema.add_field("chunk_index", DataType.INT64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    if tenants:
        schema.add_field("tenant", DataType.VARCHAR, max_length=128, is_partition_key=True)
        schema.add_field(
            "groups", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=64, max_length=128
        )
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    client.alter_collection_properties(name, properties={EMBEDDER_PROPERTY: model})
    row = {
        "id": "old",
        "source": "old.md",
        "title": "Old",
        "doc_hash": "h",
        "chunk": "old text",
        "chunk_index": 0,
        **({"tenant": "default", "groups": []} if tenants else {}),
    }
    client.upsert(name, [{**row, "vector": np.ones(dim, dtype=np.float32) / np.sqrt(dim)}])
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)  # let the CLI subprocesses open the file


def legacy_chunks(uri: str, name: str) -> int:
    """The chunks of a collection, read without ragserve (which refuses a collection from before tenants)."""
    from milvus_lite.server_manager import server_manager_instance

    client = MilvusClient(uri)
    try:
        return int(client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])
    finally:
        client.close()
        server_manager_instance.release_server(uri)


def test_a_dense_only_collection_is_refused_then_rebuilt(encoder, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = load_config(env={"RAGSERVE_HOME": str(home)})
    legacy_collection(str(cfg.store.uri), cfg.store.collection, encoder.model_name, encoder.dim)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ops.md").write_text("# Ops\n\nSet queryNode.mmap.mmapEnabled to true to map segments.\n")

    res = ragserve(home, "search", "mmapEnabled")
    assert res.returncode == 2 and "ragserve ingest PATH --rebuild" in res.stderr, res.stderr
    res = ragserve(home, "ingest", str(docs))
    assert res.returncode == 2 and "no BM25 field" in res.stderr
    uri, name = str(cfg.store.uri), cfg.store.collection
    assert legacy_chunks(uri, name) == 1  # nothing dropped without the flag
    # Dense search would work without BM25, but not without tenants: every read is restricted by them.
    for args in (["search", "mmapEnabled", "--json"], ["stats"]):
        res = ragserve(home, *args, env={"RAGSERVE__RETRIEVAL__MODE": "dense"})
        assert res.returncode == 2 and "predates tenants" in res.stderr, res.stderr
        assert "ragserve ingest PATH --rebuild" in res.stderr

    res = ragserve(home, "ingest", str(tmp_path / "missing"), "--rebuild")  # a wrong path loses nothing
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert legacy_chunks(uri, name) == 1
    res = ragserve(home, "ingest", str(docs), "--rebuild")
    assert res.returncode == 0, res.stderr
    assert "the previous ragserve_chunks__0 (1 chunks) was dropped" in res.stderr  # the migrated original
    stats = json.loads(ragserve(home, "stats").stdout)
    assert (stats["chunks"], stats["documents"]) == (1, 1)
    hits = json.loads(ragserve(home, "search", "mmapEnabled", "--json").stdout)["hits"]
    assert hits[0]["source"] == "ops.md"


def test_store_refuses_hybrid_search_without_the_bm25_field(encoder, tmp_path: Path) -> None:
    cfg = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    uri, name = str(cfg.store.uri), cfg.store.collection
    legacy_collection(uri, name, encoder.model_name, encoder.dim, tenants=True)
    store = MilvusStore(cfg.store)  # dense use: accepted
    store.ensure_collection(encoder.dim, encoder.model_name)
    with pytest.raises(SchemaMismatchError, match="--rebuild"):
        store.hybrid_search(encoder.embed_queries(["x"])[0], "x", 3, access=DEFAULT_ACCESS)
    store.close()
