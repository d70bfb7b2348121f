"""Planning a run against the store, and the steps both runners (local and Ray Data) take around it.

Idempotent and crash-safe by construction:
- a file is unchanged when the store holds exactly its current hash with the expected chunk count;
- a changed file's new chunks are written first and its old ones deleted after (``finish_file``), so a crash
  in between leaves both versions, which the next run detects as "changed" and finishes (no duplicates,
  nothing lost);
- ``--prune`` deletes only what the run owns and no longer finds: sources recorded with the run's origin
  (its root or base URL) whose files are gone. A file that failed to load this run keeps its chunks, and
  documents from the API or from another root are never touched;
- a run writes into one tenant, each document with the run's groups (or, through the API, its own), and
  plans, prunes and deletes within what its ``Access`` may see: another tenant's documents are never read or
  touched. Chunk ids of tenants other than the default include the tenant, and the groups are part of
  ``doc_hash``, so a document whose groups change is rewritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ragserve.config import IngestConfig
from ragserve.ingest.sources import Discovered, IngestError, discover_files, origin_of, shown
from ragserve.store import rebuild as rebuild_store
from ragserve.store.filters import DEFAULT_TENANT, Access, Filter
from ragserve.store.milvus import MilvusStore

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (chunks done, chunks total)
T = TypeVar("T")


class FileVersion(Protocol):
    """What planning compares with the store: a file's source, content hash and chunk count."""

    @property
    def source(self) -> str: ...
    @property
    def doc_hash(self) -> str: ...
    @property
    def n_chunks(self) -> int: ...


F = TypeVar("F", bound=FileVersion)


@dataclass
class IngestPlan(Generic[F]):
    write: list[F] = field(default_factory=list)  # new or changed files
    unchanged: list[str] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)  # sources the run owns whose files are gone
    existing: dict[str, dict[str, int]] = field(default_factory=dict)


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


def open_run(
    root: str, cfg: IngestConfig, base_url: str | None
) -> tuple[Discovered[tuple[str, str]], IngestReport, str]:
    """The opening of both runners: the files under ``root`` as (where to read it, source), the report that
    lists the refused ones, and the run's origin."""
    found = discover_files(root, cfg, base_url)
    return found, start_report(found, lambda f: f[1], shown(root), cfg), origin_of(root, base_url)


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
