from pathlib import Path

import pytest

from ragserve.config import IngestConfig
from ragserve.ingest.chunker import Chunk
from ragserve.ingest.plan import make_plan
from ragserve.ingest.prepare import PreparedFile, chunk_id, document_hash
from ragserve.ingest.sources import IngestError, discover, source_for


def prepared(source: str, doc_hash: str, n: int) -> PreparedFile:
    return PreparedFile(source, "t", doc_hash, [Chunk(f"chunk {i}", "t") for i in range(n)])


def test_plan_skips_unchanged_rewrites_changed_and_prunes_gone() -> None:
    existing = {"a.md": {"h1": 3}, "b.md": {"h1": 2}, "gone.md": {"h9": 4}, "partial.md": {"h5": 1}}
    files = [
        prepared("a.md", "h1", 3),
        prepared("b.md", "h2", 2),
        prepared("new.md", "h3", 1),
        prepared("partial.md", "h5", 2),
    ]
    plan = make_plan(files, existing, owned=existing)
    assert plan.unchanged == ["a.md"]
    assert [f.source for f in plan.write] == ["b.md", "new.md", "partial.md"]  # partial: crash mid-write
    assert plan.prune == ["gone.md"]
    assert make_plan(files, existing).prune == []  # without --prune nothing is owned for pruning


def test_prune_keeps_failed_files_and_what_the_run_does_not_own() -> None:
    existing = {"a.md": {"h1": 3}, "broken.md": {"h2": 5}, "posted": {"h3": 1}, "other-root.md": {"h4": 2}}
    plan = make_plan(
        [prepared("a.md", "h1", 3)], existing, owned={"a.md", "broken.md", "gone.md"}, failed=["broken.md"]
    )
    # broken.md failed to load this run: kept; posted / other-root.md: written by the API / another root.
    assert plan.prune == []
    assert make_plan([], existing, owned={"broken.md"}).prune == ["broken.md"]  # gone for real: pruned


def test_mixed_versions_after_a_crash_count_as_changed() -> None:
    plan = make_plan([prepared("a.md", "new", 2)], {"a.md": {"old": 3, "new": 2}})
    assert [f.source for f in plan.write] == ["a.md"]


def test_ids_are_stable_and_distinct() -> None:
    # Pinned: re-ingesting must upsert the ids already stored, so the id scheme can never change silently.
    assert chunk_id("a.md", "h", 0) == "c9f66f7f7227d6b0e5227cc9c3926a95"
    assert chunk_id("docs/ü.md", "0" * 32, 7) == "ddb9a141fac91be8f12e7700f9b161a6"
    ids = {chunk_id(s, h, i) for s in ("a.md", "b.md") for h in ("h1", "h2") for i in range(3)}
    assert len(ids) == 12
    records = prepared("a.md", "h1", 3).records()
    assert [r.chunk_index for r in records] == [0, 1, 2]


def test_document_hash_covers_text_title_and_chunking() -> None:
    cfg = IngestConfig()
    base = document_hash("text", "title", cfg)
    assert base == document_hash("text", "title", IngestConfig())
    assert base != document_hash("text!", "title", cfg)
    assert base != document_hash("text", "other", cfg)
    assert base != document_hash("text", "title", IngestConfig(chunk_size=1000))


def test_sources_are_relative_or_urls(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    page = tmp_path / "guide" / "my page.md"
    page.write_text("x")
    assert source_for(page, tmp_path, None) == "guide/my page.md"
    assert (
        source_for(page, tmp_path, "https://docs.example.com/v2/")
        == "https://docs.example.com/v2/guide/my%20page.md"
    )
    assert source_for(page, page, None) == "my page.md"


def test_discover_filters_hidden_unsupported_and_large(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.md").write_text("hidden")
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "b.HTML").write_text("<p>b</p>")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "big.txt").write_bytes(b"x" * 2_000_000)
    found = discover(tmp_path, IngestConfig(max_file_mb=1))
    assert [p.name for p in found.files] == ["a.md", "b.HTML"]
    assert found.skipped == 1  # image.png
    assert [(p.name, why) for p, why in found.refused] == [
        ("big.txt", "larger than ingest.max_file_mb (1.0 MB)")
    ]
    with pytest.raises(IngestError, match="does not exist"):
        discover(tmp_path / "nope", IngestConfig())


def test_discover_refuses_links_that_leave_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the index")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("a")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "sub" / "alias.md").symlink_to(root / "a.md")  # a link that stays inside is fine
    found = discover(root, IngestConfig())
    assert [p.relative_to(root).as_posix() for p in found.files] == ["a.md", "sub/alias.md"]
    assert [(p.name, why) for p, why in found.refused] == [
        ("leak.txt", "a link to a file outside the ingested folder")
    ]


def test_origin_is_the_base_url_or_the_resolved_root(tmp_path: Path) -> None:
    from ragserve.ingest.sources import origin_of

    assert origin_of(tmp_path / "a" / ".." / "docs", None) == str(tmp_path / "docs")
    assert origin_of(tmp_path, "https://docs.example.com/v2") == "https://docs.example.com/v2/"
    assert origin_of("s3://key:secret@bucket/docs/", None) == "s3://bucket/docs"


def test_breadcrumbs_reach_the_records_and_the_embedded_text() -> None:
    from ragserve.ingest.loaders import Document
    from ragserve.ingest.prepare import embed_text, make_splitter, prepare_text

    text = "# Guide\n\nIntro.\n\n## Install\n\nRun pip install pymilvus.\n"
    structured = IngestConfig(chunker="structured")
    records = prepare_text(Document(text, "Guide"), "g.md", structured, make_splitter(structured)).records()
    install = next(r for r in records if "pip install" in r.chunk)
    assert install.breadcrumb == "Guide > Install" and install.chunk.startswith("## Install")
    assert embed_text(install, with_title=True) == "Guide > Install\n" + install.chunk  # BM25 and the encoder
    assert embed_text(install, with_title=False) == install.chunk  # what users see stays the original text
    recursive = IngestConfig(chunker="recursive")
    (only,) = prepare_text(Document(text, "Guide"), "g.md", recursive, make_splitter(recursive)).records()
    assert only.breadcrumb == "Guide"  # the walkthrough's splitter: the title is the whole breadcrumb
    assert document_hash(text, "Guide", structured) != document_hash(text, "Guide", recursive)
