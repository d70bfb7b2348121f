"""Local ingestion in one process: discover -> load -> chunk -> plan against the store -> embed -> upsert ->
delete stale (the rules that make it idempotent and crash-safe: ingest/plan.py), and the writes of
documents sent as text (POST /v1/documents).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ragserve.config import IngestConfig
from ragserve.embedder.encoder import DocumentEncoder
from ragserve.ingest.loaders import Document, LoaderError, clean_text
from ragserve.ingest.plan import (
    IngestPlan,
    IngestReport,
    Progress,
    finish_file,
    make_plan,
    open_run,
    prune_gone,
    target_collection,
)
from ragserve.ingest.prepare import (
    PreparedFile,
    TextDocument,
    embed_text,
    make_splitter,
    prepare,
    prepare_text,
)
from ragserve.limits import MAX_FILTER_SOURCES
from ragserve.observability import metrics
from ragserve.observability.tracing import stage
from ragserve.store.filters import DEFAULT_ACCESS, DEFAULT_TENANT, Access, Filter, check_groups, check_tenant
from ragserve.store.lease import Lease
from ragserve.store.milvus import MilvusStore
from ragserve.store.schema import API_ORIGIN

log = logging.getLogger(__name__)


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
        found, report, origin = open_run(str(root.expanduser()), self.cfg, base_url)
        with Lease(self.store, f"ingest {origin}") as lease:
            prepared: list[PreparedFile] = []
            for path, source in found.files:
                try:
                    prepared.append(
                        prepare(
                            Path(path),
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
