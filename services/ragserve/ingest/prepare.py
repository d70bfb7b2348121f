"""One document made ready to write: read, cleaned, chunked, hashed, and turned into chunk records whose
ids are derived from (tenant, source, doc_hash, chunk_index), so writing the same file twice upserts the same
rows; ``doc_hash`` covers the cleaned text, the chunking settings and the groups."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from ragserve.config import IngestConfig
from ragserve.ingest.chunker import Chunk, RecursiveSplitter, StructuredSplitter
from ragserve.ingest.loaders import Document, LoaderError, load_document, parse_document
from ragserve.limits import check_source
from ragserve.observability.tracing import stage
from ragserve.store.filters import DEFAULT_TENANT
from ragserve.store.milvus import ChunkRecord


@dataclass(frozen=True)
class PreparedFile:
    source: str
    title: str
    doc_hash: str
    chunks: list[Chunk]
    origin: str = ""  # the run's origin (see origin_of), recorded with every chunk
    tenant: str = DEFAULT_TENANT
    groups: tuple[str, ...] = ()  # sorted (check_groups); empty: visible to the whole tenant

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    def records(self) -> list[ChunkRecord]:
        return [
            ChunkRecord(
                chunk_id(self.source, self.doc_hash, i, self.tenant),
                self.source,
                self.title,
                c.text,
                i,
                self.doc_hash,
                c.breadcrumb,
                self.origin,
                self.tenant,
                self.groups,
            )
            for i, c in enumerate(self.chunks)
        ]


@dataclass(frozen=True)
class TextDocument:
    """A document that arrives as text (the HTTP API) rather than as a file."""

    source: str
    text: str
    title: str | None = None
    groups: tuple[str, ...] = ()


def chunk_id(source: str, doc_hash: str, index: int, tenant: str = DEFAULT_TENANT) -> str:
    """Unique across tenants (two tenants may hold the same source and text); the default tenant's ids are
    those from before tenants."""
    scope = "" if tenant == DEFAULT_TENANT else f"{tenant}\x00"
    return hashlib.sha256(f"{scope}{source}\x00{doc_hash}\x00{index}".encode()).hexdigest()[:32]


def document_hash(text: str, title: str, cfg: IngestConfig, groups: Sequence[str] = ()) -> str:
    """Covers the text, title, chunking settings and groups: a document whose groups change is rewritten
    (without groups, the hash from before groups)."""
    settings = f"{cfg.chunk_size}:{cfg.chunk_overlap}:{cfg.embed_title}:{cfg.chunker}"
    access = "\x00" + "\x01".join(sorted(groups)) if groups else ""
    return hashlib.sha256(f"{settings}\x00{title}\x00{text}{access}".encode()).hexdigest()[:32]


Splitter = Callable[[str, str], list[Chunk]]  # (text, title) -> chunks with their breadcrumbs


def make_splitter(cfg: IngestConfig) -> Splitter:
    """ingest.chunker: the walkthrough's recursive splitter (breadcrumb = the title) or the structured one."""
    overlap = cfg.chunk_overlap or 0
    if cfg.chunker == "structured":
        return StructuredSplitter(cfg.chunk_size, overlap).split
    recursive = RecursiveSplitter(cfg.chunk_size, overlap)
    return lambda text, title: [Chunk(t, title) for t in recursive.split(text)]


def prepare(
    path: PurePath,
    source: str,
    cfg: IngestConfig,
    splitter: Splitter,
    raw: bytes | None = None,
    *,
    origin: str = "",
    tenant: str = DEFAULT_TENANT,
    groups: tuple[str, ...] = (),
) -> PreparedFile:
    """Read, clean and chunk one file (a trace span per file when tracing is on). ``raw``: the file's bytes
    when something else read them (object storage); ``path`` then only names it."""
    with stage("ingest.file", source=source) as span:
        limit = cfg.file_time_limit_s
        doc = (
            load_document(Path(path), time_limit_s=limit)
            if raw is None
            else parse_document(raw, path, time_limit_s=limit)
        )
        prepared = prepare_text(doc, source, cfg, splitter, origin, tenant=tenant, groups=groups)
        span.set_attribute("chunks", len(prepared.chunks))
        return prepared


def prepare_text(
    doc: Document,
    source: str,
    cfg: IngestConfig,
    splitter: Splitter,
    origin: str = "",
    *,
    tenant: str = DEFAULT_TENANT,
    groups: tuple[str, ...] = (),
) -> PreparedFile:
    try:
        check_source(source)
    except ValueError as err:  # a file whose relative path (or URL) is too long to store whole
        raise LoaderError(str(err)) from None
    chunks = splitter(doc.text, doc.title)
    if not chunks:
        raise LoaderError("no text content")
    doc_hash = document_hash(doc.text, doc.title, cfg, groups)
    return PreparedFile(source, doc.title, doc_hash, chunks, origin, tenant, groups)


def embed_text(record: ChunkRecord, with_title: bool) -> str:
    """The chunk with its breadcrumb (the title, or Title > Section > ...), or the bare chunk."""
    return record.search_text if with_title else record.chunk
