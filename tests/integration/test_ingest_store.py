"""Ingestion and dense retrieval with the real bundled MiniLM encoder, on Milvus Lite and on a real Milvus
server (the same store code, a URI instead of a file): every test here runs against both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ragserve.config import RetrievalConfig, load_config
from ragserve.ingest.pipeline import Ingestor
from ragserve.ingest.plan import make_plan
from ragserve.ingest.prepare import PreparedFile, TextDocument
from ragserve.ingest.sources import IngestError
from ragserve.limits import MAX_DOCUMENTS
from ragserve.retrieval import Retriever, local_query_embedder
from ragserve.store.filters import DEFAULT_ACCESS, Filter
from ragserve.store.milvus import MilvusStore
from ragserve.store.schema import SchemaMismatchError

STORES = ("lite", "server")  # each test that uses app_config runs on both (conftest)


def all_ids(store) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in store._iterate(["id", "source"]):
        out.setdefault(row["source"], set()).add(row["id"])
    return out


def test_ingest_is_idempotent_and_replaces_only_changed_files(
    corpus_subset: Path, encoder, store, app_config
) -> None:
    ingestor = Ingestor(encoder, store, app_config.ingest)
    first = ingestor.run(corpus_subset)
    assert first.files == len(list(corpus_subset.rglob("*.md"))) and not first.files_failed
    assert first.chunks_new > 50 and first.chunks_updated == first.chunks_deleted == 0
    before = all_ids(store)
    assert sum(len(v) for v in before.values()) == first.chunks_new

    second = ingestor.run(corpus_subset)
    assert second.chunks_written == 0 and second.chunks_deleted == 0
    assert second.files_unchanged == first.files
    assert all_ids(store) == before

    page = corpus_subset / "reference" / "metric.md"
    page.write_text(page.read_text() + "\n\nA new closing paragraph about Hamming distance.\n")
    third = ingestor.run(corpus_subset)
    assert third.files_written == 1 and third.chunks_new == 0
    assert third.chunks_deleted == len(before["reference/metric.md"])
    after = all_ids(store)
    assert after["reference/metric.md"].isdisjoint(before["reference/metric.md"])
    assert {s: ids for s, ids in after.items() if s != "reference/metric.md"} == {
        s: ids for s, ids in before.items() if s != "reference/metric.md"
    }

    (corpus_subset / "reference" / "disk_index.md").unlink()
    kept = ingestor.run(corpus_subset)
    assert "reference/disk_index.md" in all_ids(store) and kept.sources_pruned == 0
    pruned = ingestor.run(corpus_subset, prune=True)
    assert pruned.sources_pruned == 1 and pruned.chunks_deleted == len(before["reference/disk_index.md"])
    assert "reference/disk_index.md" not in all_ids(store)


def test_interrupted_update_is_finished_by_the_next_run(
    corpus_subset: Path, encoder, store, app_config
) -> None:
    ingestor = Ingestor(encoder, store, app_config.ingest)
    ingestor.run(corpus_subset)
    clean = all_ids(store)
    page = corpus_subset / "reference" / "index.md"
    page.write_text(page.read_text() + "\n\nEdited.\n")
    # Simulate a crash between "write new chunks" and "delete old chunks": write half the new version only.
    changed = next(f for f in _prepare_all(ingestor, corpus_subset) if f.source == "reference/index.md")
    half = changed.records()[: len(changed.chunks) // 2]
    store.upsert(half, encoder.embed_documents([r.chunk for r in half]))
    assert make_plan([changed], store.document_index(access=DEFAULT_ACCESS)).write == [changed]

    report = ingestor.run(corpus_subset)
    assert report.files_written == 1
    final = all_ids(store)
    assert final["reference/index.md"] == {r.id for r in changed.records()}
    assert {s: v for s, v in final.items() if s != "reference/index.md"} == {
        s: v for s, v in clean.items() if s != "reference/index.md"
    }


def _prepare_all(ingestor: Ingestor, root: Path) -> list[PreparedFile]:
    from ragserve.ingest.prepare import prepare
    from ragserve.ingest.sources import discover, source_for

    paths = discover(root, ingestor.cfg).files
    return [prepare(p, source_for(p, root, None), ingestor.cfg, ingestor.splitter) for p in paths]


def test_bad_files_are_reported_and_nothing_stored_is_lost(
    tmp_path: Path, encoder, store, app_config
) -> None:
    docs = tmp_path / "mixed"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nMilvus stores vectors in collections.\n")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (docs / "latin1.txt").write_bytes("Résumé des paramètres".encode("latin-1"))
    ingestor = Ingestor(encoder, store, app_config.ingest)
    report = ingestor.run(docs)
    assert sorted(s for s, _ in report.files_failed) == ["binary.txt", "latin1.txt"]
    assert report.chunks_new == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="no supported files"):
        ingestor.run(empty)
    assert store.count(Filter(("good.md",)), access=DEFAULT_ACCESS) == 1  # still there after the failed runs


def test_prune_deletes_only_what_the_run_owns_and_no_longer_finds(
    tmp_path: Path, encoder, store, app_config
) -> None:
    """The reproduction of issue 27: two Markdown files ingested, one overwritten with bytes that are not
    UTF-8, then ``--prune``; plus a document posted through the API and one from another folder."""
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir(), other.mkdir()
    for name in ("first.md", "second.md"):
        (docs / name).write_text(f"# {name}\n\n" + "Milvus keeps vectors in collections. " * 60)
    (other / "elsewhere.md").write_text("# Elsewhere\n\nA page from another folder.\n")
    ingestor = Ingestor(encoder, store, app_config.ingest)
    ingestor.run(docs)
    ingestor.run(other)
    ingestor.ingest_texts([TextDocument("notes/posted", "Posted through the API.")])
    before = all_ids(store)
    (docs / "second.md").write_bytes(b"\xff\xfe not UTF-8 \xc3\x28")
    report = ingestor.run(docs, prune=True)
    assert [s for s, _ in report.files_failed] == ["second.md"]
    assert report.sources_pruned == 0 and report.chunks_deleted == 0
    assert all_ids(store) == before

    (docs / "second.md").unlink()  # gone for real: now it is pruned, and only it
    report = ingestor.run(docs, prune=True)
    assert report.sources_pruned == 1 and report.chunks_deleted == len(before["second.md"])
    assert all_ids(store) == {s: ids for s, ids in before.items() if s != "second.md"}


def test_posting_a_thousand_documents_at_once(encoder, store, app_config) -> None:
    """limits.MAX_DOCUMENTS in one request (the planning look-up names at most 100 sources per filter)."""
    docs = [
        TextDocument(f"bulk/{i:04d}.md", f"Document {i} mentions segment {i}.") for i in range(MAX_DOCUMENTS)
    ]
    report = Ingestor(encoder, store, app_config.ingest).ingest_texts(docs)
    assert report.chunks_new == MAX_DOCUMENTS
    again = Ingestor(encoder, store, app_config.ingest).ingest_texts(docs)
    assert again.files_unchanged == MAX_DOCUMENTS and again.chunks_written == 0


def test_a_repost_within_the_staleness_window_keeps_one_version(encoder, app_config) -> None:
    """With consistency_level Bounded (production), planning still reads the latest writes: a document
    posted twice in a row keeps only its second version, and its delete right after finds it."""
    cfg = app_config.model_copy(
        update={"store": app_config.store.model_copy(update={"consistency_level": "Bounded"})}
    )
    bounded = MilvusStore(cfg.store)
    try:
        ingestor = Ingestor(encoder, bounded, cfg.ingest)
        for round_ in range(3):
            for version in ("first", "second"):
                ingestor.ingest_texts(
                    [TextDocument(f"re/{round_}", f"The {version} version of round {round_}.")]
                )
            where = Filter((f"re/{round_}",))
            (versions,) = bounded.document_index(where, access=DEFAULT_ACCESS).values()
            assert len(versions) == 1, versions  # the first version was seen, hence replaced
            # What DELETE checks before deleting: found at once (> 0, not == 1: Milvus 2.3's count(*) may
            # still include the replaced version's deleted rows).
            assert bounded.count(where, access=DEFAULT_ACCESS, latest=True) > 0
    finally:
        bounded.close()


def test_search_finds_the_gold_page_and_filters_by_source(
    corpus_subset: Path, encoder, store, app_config
) -> None:
    Ingestor(encoder, store, app_config.ingest).run(corpus_subset)
    # Dense: the [server] variant's Milvus 2.3 predates BM25 (its collections are dense-only).
    retriever = Retriever(local_query_embedder(encoder), store, RetrievalConfig(mode="dense"))
    result = asyncio.run(retriever.search("What do the parameters for HNSW mean?", 5))
    assert "reference/index.md" in [h.source for h in result.hits]
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
    only = asyncio.run(retriever.search("HNSW parameters", 5, Filter(("reference/metric.md",))))
    assert only.hits and {h.source for h in only.hits} == {"reference/metric.md"}
    # A quoted value can't widen the filter into an expression matching everything.
    assert asyncio.run(retriever.search("HNSW", 5, Filter(('x" or source != "',)))).hits == []
    assert set(result.timings) == {"embed_ms", "search_ms"}


def test_existing_collection_from_another_embedder_is_refused(store, encoder) -> None:
    store.ensure_collection(8, "some-other-model")
    with pytest.raises(SchemaMismatchError, match="8-d vectors"):
        store.ensure_collection(encoder.dim, encoder.model_name)
    store.drop()
    store.ensure_collection(encoder.dim, "other-model-same-dim")
    with pytest.raises(SchemaMismatchError, match="other-model-same-dim"):
        store.ensure_collection(encoder.dim, encoder.model_name)


def test_encoder_returns_normalized_float32(encoder) -> None:
    vectors = encoder.embed_documents(["Milvus is a vector database.", "HNSW is a graph index."])
    assert vectors.dtype == np.float32 and vectors.shape == (2, encoder.dim) == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert encoder.embed_queries([]).shape == (0, 384)


def test_source_filter_helpers_on_real_milvus(store, encoder, app_config) -> None:
    from ragserve.store.milvus import ChunkRecord

    store.ensure_collection(encoder.dim, encoder.model_name)
    records = [
        ChunkRecord(f"id{i}", src, "t", f"text {i}", 0, "h")
        for i, src in enumerate(["a/x.md", "a/y.md", "b/z.md", 'q"uote.md', "a_b/u.md", "axb/v.md"])
    ]
    store.upsert(records, encoder.embed_documents([r.chunk for r in records]))
    assert store.count(Filter(source_prefix="a/"), access=DEFAULT_ACCESS) == 2
    assert (
        store.count(Filter(source_prefix="a%"), access=DEFAULT_ACCESS) == 0
    )  # % is a literal, not a wildcard
    if app_config.store.is_lite:  # Milvus 2.3's LIKE has no escapes: the server path differs here
        assert (
            store.count(Filter(source_prefix="a_b/"), access=DEFAULT_ACCESS) == 1
        )  # _ is a literal too (axb/ does not match)
    assert store.count(Filter(('q"uote.md',)), access=DEFAULT_ACCESS) == 1
    assert (
        store.count(Filter(("a/x.md", "b/z.md"), source_prefix="a/"), access=DEFAULT_ACCESS) == 1
    )  # both: and
    store.delete(Filter(("b/z.md",)), access=DEFAULT_ACCESS)
    assert store.count(access=DEFAULT_ACCESS) == 5
    assert store.count(Filter(("b/z.md",)), access=DEFAULT_ACCESS) == 0
    with pytest.raises(ValueError, match="non-empty filter"):
        store.delete(Filter(), access=DEFAULT_ACCESS)  # never the whole collection by accident
    assert store.count(access=DEFAULT_ACCESS) == 5


def test_store_follows_a_restarted_lite_owner_to_its_new_port(tmp_path: Path, encoder) -> None:
    """A rollout replaces the Milvus Lite owner, which comes back on a new port. With ``locate`` (the
    router asks the owner's handle) a call that fails on the old port reconnects and is retried there."""
    from ragserve.store.connection import StoreError
    from ragserve.store.lite_server import LiteServer
    from ragserve.store.milvus import ChunkRecord, MilvusStore

    db = str(tmp_path / "milvus.db")
    first = LiteServer(db)
    cfg = load_config(overrides={"store": {"uri": first.uri}}, env={"RAGSERVE_HOME": str(tmp_path)})
    plain = MilvusStore(cfg.store)
    owner = {"server": first}
    located: list[str] = []

    def locate() -> str:
        located.append(owner["server"].uri)
        return owner["server"].uri

    store = MilvusStore(cfg.store, locate=locate)
    store.ensure_collection(encoder.dim, encoder.model_name)
    record = ChunkRecord("a", "a.md", "A", "Milvus keeps vectors.", 0, "h")
    vector = encoder.embed_documents([record.chunk])
    store.upsert([record], vector)
    assert located == []  # nothing failed: nobody asked
    first.stop()
    owner["server"] = second = LiteServer(db)
    try:
        assert second.uri != first.uri
        with pytest.raises(StoreError):  # without locate the old port is simply gone
            plain.count(access=DEFAULT_ACCESS)
        hits = store.search(vector, 1, access=DEFAULT_ACCESS)[
            0
        ]  # fails on the old port, follows, retried on the new one
        assert [h.id for h in hits] == ["a"] and store.cfg.uri == second.uri and located == [second.uri]
        # A failure that is not a move: asked once, the same URI, not retried, the error stands.
        with pytest.raises(StoreError, match="no_such"):
            store._rpc("describe_collection", store.client.describe_collection, "no_such")
        assert located == [second.uri, second.uri]
        plain.reconnect(second.uri)  # what check_health did before locate existed still works
        assert plain.count(access=DEFAULT_ACCESS) == 1
    finally:
        store.close()
        plain.close()
        second.stop()


def test_two_writers_creating_the_same_collection_both_succeed(tmp_path: Path) -> None:
    """Distributed ingestion's writers create a new collection from their first vectors; one that loses the
    race (its create finds the collection made in between) checks it and carries on."""
    from ragserve.store.lite_server import LiteServer
    from ragserve.store.milvus import MilvusStore
    from ragserve.store.schema import SchemaMismatchError

    server = LiteServer(str(tmp_path / "milvus.db"))
    cfg = load_config(overrides={"store": {"uri": server.uri}}, env={"RAGSERVE_HOME": str(tmp_path)})
    first, late, wrong = (MilvusStore(cfg.store) for _ in range(3))
    try:
        first.ensure_collection(8, "m")
        checks = iter([False])  # the late writer checked before the first one created it
        late.has_collection = lambda: next(checks, True)  # type: ignore[method-assign]
        late.ensure_collection(8, "m")
        assert late.vector_dim() == 8
        wrong.has_collection = iter([False, True]).__next__  # type: ignore[method-assign]
        with pytest.raises(SchemaMismatchError, match="8-d vectors"):
            wrong.ensure_collection(16, "m")  # lost the race to a collection it cannot use: refused
    finally:
        for store in (first, late, wrong):
            store.close()
        server.stop()


def test_stats_count_in_milvus_without_scanning_the_collection(
    corpus_subset: Path, encoder, store, app_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = Ingestor(encoder, store, app_config.ingest).run(corpus_subset)

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("stats must not read every row through the client")

    monkeypatch.setattr(store, "_iterate", no_scan)
    stats = store.stats(access=DEFAULT_ACCESS)
    assert (stats["chunks"], stats["documents"]) == (report.chunks_new, report.files_written)
