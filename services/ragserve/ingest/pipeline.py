"""Local ingestion: discover -> load -> chunk -> plan against the store -> embed -> upsert -> delete stale.

Idempotent and crash-safe by construction:
- chunk ids are derived from (source, doc_hash, chunk_index), so writing the same file twice upserts the
  same rows; ``doc_hash`` covers the cleaned text and the chunking settings;
- a file is unchanged when the store holds exactly its current hash with the expected chunk count;
- a changed file's new chunks are written first and its old ones deleted after, so a crash in between leaves
  both versions, which the next run detects as "changed" and finishes (no duplicates, nothing lost);
- ``--prune`` deletes only what the run owns and no longer finds: sources recorded with the run's origin
  (its root or base URL) whose files are gone. A file that failed to load this run keeps its chunks, and
  documents from the API or from another root are never touched;
- a run writes into one tenant, each document with the run's groups (or, through the API, its own), and
  plans, prunes and deletes within what its ``Access`` may see: another tenant's documents are never read or
  touched. Chunk ids of tenants other than the default include the tenant, and the groups are part of
  ``doc_hash``, so a document whose groups change is rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote as url_quote

from ragserve.config import IngestConfig
from ragserve.embedder.encoder import DocumentEncoder
from ragserve.ingest.chunker import Chunk, RecursiveSplitter, StructuredSplitter
from ragserve.ingest.loaders import Document, LoaderError, clean_text, load_document, parse_document
from ragserve.limits import MAX_FILTER_SOURCES, check_source
from ragserve.observability import metrics
from ragserve.observability.tracing import stage
from ragserve.store import rebuild as rebuild_store
from ragserve.store.filters import DEFAULT_ACCESS, DEFAULT_TENANT, Access, Filter, check_groups, check_tenant
from ragserve.store.lease import Lease
from ragserve.store.milvus import API_ORIGIN, ChunkRecord, MilvusStore

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (chunks done, chunks total)


class IngestError(ValueError):
    """Nothing can be ingested from the given path (missing, empty, no supported files)."""


class FileVersion(Protocol):
    """What planning compares with the store: a file's source, content hash and chunk count."""

    @property
    def source(self) -> str: ...
    @property
    def doc_hash(self) -> str: ...
    @property
    def n_chunks(self) -> int: ...


F = TypeVar("F", bound=FileVersion)
T = TypeVar("T")


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


@dataclass
class IngestPlan(Generic[F]):
    write: list[F] = field(default_factory=list)  # new or changed files
    unchanged: list[str] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)  # sources the run owns whose files are gone
    existing: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Discovered(Generic[T]):
    """What a run found under its root: the files to read, the count left out by extension, and the files
    refused with a reason (too large, a link leaving the root), reported as failed and never pruned."""

    files: list[T]
    skipped: int = 0
    refused: list[tuple[T, str]] = field(default_factory=list)


@dataclass
class IngestReport:
    files: int = 0
    files_unchanged: int = 0
    files_written: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    files_skipped: int = 0  # unsupported extension or too large
    chunks_new: int = 0
    chunks_updated: int = 0
    chunks_deleted: int = 0
    sources_pruned: int = 0
    rebuilt_from_chunks: int | None = None  # --rebuild: chunks of the collection it replaced
    rebuild_switch: rebuild_store.Switch | None = None  # --rebuild: the new collection, the switch time
    seconds: float = 0.0

    @property
    def chunks_written(self) -> int:
        return self.chunks_new + self.chunks_updated

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"ingested {self.files} files ({self.files_written} written, {self.files_unchanged} unchanged, "
            f"{len(self.files_failed)} failed, {self.files_skipped} skipped): chunks {self.chunks_new} new, "
            f"{self.chunks_updated} updated, {self.chunks_deleted} deleted in {self.seconds:.1f} s "
            f"({self.chunks_per_s:.1f} chunks/s)"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "files_written": self.files_written,
            "files_unchanged": self.files_unchanged,
            "files_failed": [{"source": s, "reason": r} for s, r in self.files_failed],
            "files_skipped": self.files_skipped,
            "chunks_new": self.chunks_new,
            "chunks_updated": self.chunks_updated,
            "chunks_deleted": self.chunks_deleted,
            "sources_pruned": self.sources_pruned,
            "rebuilt_from_chunks": self.rebuilt_from_chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_s": round(self.chunks_per_s, 1),
        }


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


def discover(root: Path, cfg: IngestConfig) -> Discovered[Path]:
    """Supported files under ``root`` (or ``root`` itself), sorted. A file that resolves outside ``root``
    (a symbolic link to /etc/..., or into another tree) is refused: ingesting a folder never reads what
    lies outside it."""
    if not root.exists():
        raise IngestError(f"path does not exist: {root}")
    if root.is_file():
        return select_files([(root, (), root.name, root.stat().st_size)], cfg)
    real_root = root.resolve()
    found = select_files(
        (
            (p, p.relative_to(root).parts, p.name, p.stat().st_size)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        ),
        cfg,
    )
    outside = [p for p in found.files if not p.resolve().is_relative_to(real_root)]
    found.files = [p for p in found.files if p not in set(outside)]
    found.refused.extend((p, "a link to a file outside the ingested folder") for p in outside)
    return found


def is_object_store(root: str) -> bool:
    """s3://bucket/prefix and the other URIs pyarrow.fs opens (gs://, abfs://, file://): `ingest --ray`
    reads these (ingest/distributed.py); everything else is a local path."""
    return "://" in root


def shown(root: str) -> str:
    """``root`` as messages, logs and traces show it: an object store URI loses its ``user:secret@``."""
    return re.sub(r"(?<=://)[^/@]*@", "", root)


def select_files(
    candidates: Iterable[tuple[T, tuple[str, ...], str, int]], cfg: IngestConfig
) -> Discovered[T]:
    """The files to ingest among (file, the parts of its path under the root, its name, its size in bytes),
    in order: hidden files and folders left out; other extensions counted as skipped; files over
    ingest.max_file_mb refused (a file that grew past the limit keeps its stored chunks)."""
    max_bytes = int(cfg.max_file_mb * 1024 * 1024)
    found: Discovered[T] = Discovered([])
    for item, rel_parts, name, size in candidates:
        if any(part.startswith(".") for part in rel_parts):
            continue  # hidden files and folders (.git, .venv)
        if PurePosixPath(name).suffix.lower() not in cfg.extensions:
            found.skipped += 1
        elif size > max_bytes:
            found.refused.append((item, f"larger than ingest.max_file_mb ({cfg.max_file_mb} MB)"))
        else:
            found.files.append(item)
    return found


def origin_of(root: str | Path, base_url: str | None) -> str:
    """Who owns what a run writes: its base URL, else its root (an absolute local path, or an object store
    URI without credentials). ``--prune`` deletes only sources recorded with the run's own origin."""
    if base_url:
        origin = base_url.rstrip("/") + "/"
    elif is_object_store(str(root)):
        origin = shown(str(root)).rstrip("/")
    else:
        origin = str(Path(root).expanduser().resolve())
    if origin == API_ORIGIN:  # cannot happen for the forms above; kept explicit for the reader
        raise IngestError(f"{origin!r} is reserved for documents written through the API")
    return origin


def start_report(
    found: Discovered[T], describe: Callable[[T], str], root: str, cfg: IngestConfig
) -> IngestReport:
    """The report a run opens with: what was found, and each refused file with its reason (logged too).
    Raises IngestError when nothing can be ingested."""
    if not found.files and not found.refused:
        raise IngestError(f"no supported files under {root} (extensions: {', '.join(cfg.extensions)})")
    report = IngestReport(files=len(found.files) + len(found.refused), files_skipped=found.skipped)
    for item, reason in found.refused:
        log.warning("skipping %s: %s", describe(item), reason)
        report.files_failed.append((describe(item), reason))
    return report


def source_for(path: Path, root: Path, base_url: str | None) -> str:
    return source_of(path.name if root.is_file() else path.relative_to(root).as_posix(), base_url)


def source_of(rel: str, base_url: str | None) -> str:
    """How a file is recorded: its path relative to the ingested root, or BASE_URL/that path."""
    return f"{base_url.rstrip('/')}/{url_quote(rel)}" if base_url else rel


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


def make_plan(
    prepared: Sequence[F],
    existing: dict[str, dict[str, int]],
    owned: Iterable[str] = (),
    failed: Iterable[str] = (),
) -> IngestPlan[F]:
    """Write what is new or changed; prune the ``owned`` sources (recorded with the run's origin; empty
    without --prune) that are neither among ``prepared`` nor ``failed`` this run."""
    plan: IngestPlan[F] = IngestPlan(existing=existing)
    for f in prepared:
        if existing.get(f.source) == {f.doc_hash: f.n_chunks}:
            plan.unchanged.append(f.source)
        else:
            plan.write.append(f)
    keep = {f.source for f in prepared} | set(failed)
    plan.prune = sorted(s for s in set(owned) if s not in keep and s in existing)
    return plan


def _groups(files: Sequence[PreparedFile], size: int) -> Iterator[list[PreparedFile]]:
    group: list[PreparedFile] = []
    count = 0
    for f in files:
        group.append(f)
        count += len(f.chunks)
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def embed_text(record: ChunkRecord, with_title: bool) -> str:
    """The chunk with its breadcrumb (the title, or Title > Section > ...), or the bare chunk."""
    return record.search_text if with_title else record.chunk


@contextmanager
def target_collection(
    store: MilvusStore, rebuild: bool, report: IngestReport, tenant: str = DEFAULT_TENANT
) -> Iterator[MilvusStore]:
    """The store a run writes into. Without ``rebuild``: ``store`` itself. With it: a new collection, built
    while the current one keeps answering searches, that takes over store.collection (an alias switch,
    store/rebuild.py) when the block completes; dropped instead when the block fails, or when nothing was
    written (every file failed to load: the current collection is worth more than an empty one). A rebuild
    writes one tenant's documents: it is refused while the collection holds another tenant's."""
    if not rebuild:
        yield store
        return
    others = store.collection_chunks(outside=tenant)
    if others:
        raise IngestError(
            f"--rebuild replaces the whole collection {store.collection!r}, which holds {others} chunks of "
            f"tenants other than {tenant!r}: rebuild into another store.collection and ingest every "
            "tenant's documents there"
        )
    new = rebuild_store.begin(store)
    previous = store.collection_chunks() if store.has_collection() else None
    try:
        yield new
    except BaseException:
        rebuild_store.abandon(new)
        raise
    if report.chunks_written == 0:
        log.warning("rebuild wrote nothing: %s keeps its current collection", store.collection)
        rebuild_store.abandon(new)
        return
    report.rebuilt_from_chunks = previous
    report.rebuild_switch = rebuild_store.switch(store, new)


def finish_file(
    store: MilvusStore, plan: IngestPlan[F], f: FileVersion, report: IngestReport, access: Access
) -> None:
    """Called once every new chunk of ``f`` is written: only now are its other versions deleted."""
    old = plan.existing.get(f.source, {})
    stale = sum(n for h, n in old.items() if h != f.doc_hash)
    if stale:
        store.delete_stale(f.source, f.doc_hash, access=access)
    report.chunks_deleted += stale
    if old:
        report.chunks_updated += f.n_chunks
    else:
        report.chunks_new += f.n_chunks
    report.files_written += 1


def prune_gone(store: MilvusStore, plan: IngestPlan[F], report: IngestReport, access: Access) -> None:
    """``--prune``: delete every chunk of the sources the run owns whose files are no longer under PATH."""
    for source in plan.prune:
        report.chunks_deleted += sum(plan.existing[source].values())
        store.delete(Filter.of_sources([source]), access=access)
        report.sources_pruned += 1


class Ingestor:
    """Writes prepared documents idempotently. ``encoder`` needs ``dim``, ``model_name`` and a
    synchronous ``embed_documents`` (the local Encoder, or the router's adapter over the embedder pool)."""

    def __init__(self, encoder: DocumentEncoder, store: MilvusStore, cfg: IngestConfig):
        self.encoder = encoder
        self.store = store
        self.cfg = cfg
        self.splitter = make_splitter(cfg)

    def run(
        self,
        root: Path,
        *,
        base_url: str | None = None,
        prune: bool = False,
        rebuild: bool = False,
        progress: Progress | None = None,
        tenant: str = DEFAULT_TENANT,
        groups: Sequence[str] = (),
    ) -> IngestReport:
        """``rebuild``: write everything anew into a new collection that replaces the current one when it is
        complete (searches keep answering from the current one meanwhile). The run holds the collection's
        lease (store/lease.py) from the start: a second run against the same collection is refused with
        LeaseBusyError instead of deleting this one's chunks. Every file goes to ``tenant`` with ``groups``
        (none: the whole tenant reads it); the run sees and replaces that tenant's documents of any group."""
        started = time.perf_counter()
        tenant, placed = check_tenant(tenant), check_groups(groups)
        access = Access(tenant)
        root = root.expanduser()
        found = discover(root, self.cfg)
        report = start_report(found, lambda p: source_for(p, root, base_url), str(root), self.cfg)
        origin = origin_of(root, base_url)
        with Lease(self.store, f"ingest {origin}") as lease:
            prepared: list[PreparedFile] = []
            for path in found.files:
                source = source_for(path, root, base_url)
                try:
                    prepared.append(
                        prepare(
                            path,
                            source,
                            self.cfg,
                            self.splitter,
                            origin=origin,
                            tenant=tenant,
                            groups=placed,
                        )
                    )
                except LoaderError as err:
                    log.warning("skipping %s: %s", source, err)
                    report.files_failed.append((source, str(err)))
            with target_collection(self.store, rebuild, report, tenant) as store:
                store.ensure_collection(self.encoder.dim, self.encoder.model_name)
                owned = store.sources_of_origin(origin, access=access) if prune else set()
                failed = [source for source, _ in report.files_failed]
                plan = make_plan(prepared, store.document_index(access=access), owned, failed)
                writer = self if store is self.store else Ingestor(self.encoder, store, self.cfg)
                writer._apply(plan, report, progress, access)
                lease.check()  # before a rebuild's switch: a run that lost its lease must not switch
        report.seconds = time.perf_counter() - started
        return report

    def ingest_texts(self, docs: Sequence[TextDocument], access: Access = DEFAULT_ACCESS) -> IngestReport:
        """Idempotent write of documents sent as text (POST /v1/documents): cleaned, chunked and hashed
        exactly like files, into ``access.tenant`` with each document's groups. Planned within ``access``
        (the caller's): a document of the same source the caller cannot see is neither read nor replaced.
        Raises ValueError naming ``documents.N.field`` before anything is written."""
        sources = [d.source for d in docs]
        if len(set(sources)) != len(sources):
            raise ValueError("documents: each document source must be unique in a request")
        prepared = []
        for i, doc in enumerate(docs):
            text = clean_text(doc.text)
            if not text:
                raise ValueError(f"documents.{i}.text: document text is empty")
            try:
                document = Document(text, doc.title or doc.source)
                groups = check_groups(doc.groups, f"documents.{i}.groups")
                prepared.append(
                    prepare_text(
                        document,
                        doc.source,
                        self.cfg,
                        self.splitter,
                        API_ORIGIN,
                        tenant=access.tenant,
                        groups=groups,
                    )
                )
            except LoaderError as err:
                raise ValueError(f"documents.{i}.text: {err}") from None
        return self._ingest_prepared(prepared, access)

    def _ingest_prepared(self, prepared: Sequence[PreparedFile], access: Access) -> IngestReport:
        """Idempotent write of in-memory documents; only their own sources are compared."""
        started = time.perf_counter()
        report = IngestReport(files=len(prepared))
        self.store.ensure_collection(self.encoder.dim, self.encoder.model_name)
        existing: dict[str, dict[str, int]] = {}
        sources = [f.source for f in prepared]
        for start in range(0, len(sources), MAX_FILTER_SOURCES):  # a filter names at most this many
            existing |= self.store.document_index(
                Filter.of_sources(sources[start : start + MAX_FILTER_SOURCES]), access=access
            )
        self._apply(make_plan(prepared, existing), report, None, access)
        report.seconds = time.perf_counter() - started
        return report

    def _apply(
        self,
        plan: IngestPlan[PreparedFile],
        report: IngestReport,
        progress: Progress | None,
        access: Access,
    ) -> None:
        report.files_unchanged = len(plan.unchanged)
        self._write(plan, report, progress, access)
        prune_gone(self.store, plan, report, access)

    def _write(
        self,
        plan: IngestPlan[PreparedFile],
        report: IngestReport,
        progress: Progress | None,
        access: Access,
    ) -> None:
        """Embed and write changed files in groups; ``progress(done_chunks, total_chunks)`` after each."""
        total = sum(len(f.chunks) for f in plan.write)
        done = 0
        for group in _groups(plan.write, self.cfg.write_group_chunks):
            records = [r for f in group for r in f.records()]
            with stage("ingest.write", files=len(group), chunks=len(records)):
                texts = [embed_text(r, self.cfg.embed_title) for r in records]
                vectors = self.encoder.embed_documents(texts)
                self.store.upsert(records, vectors)
                for f in group:
                    finish_file(self.store, plan, f, report, access)
            done += len(records)
            metrics.INGESTED_DOCUMENTS.inc(len(group))
            metrics.INGESTED_CHUNKS.inc(len(records))
            log.info("wrote %d/%d chunks", done, total)
            if progress is not None:
                progress(done, total)
