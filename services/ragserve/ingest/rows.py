"""The Arrow encoding of chunks between Ray Data stages: one row per chunk, and back to ChunkRecords."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ragserve.store.filters import DEFAULT_TENANT
from ragserve.store.milvus import ChunkRecord

# One row per chunk; a file that failed to load is one row with chunk_index -1 and its reason in `error`.
CHUNK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("chunk", pa.string()),
        ("chunk_index", pa.int32()),
        ("doc_hash", pa.string()),
        ("breadcrumb", pa.string()),
        ("origin", pa.string()),
        ("n_chunks", pa.int32()),
        ("error", pa.string()),
    ]
)


def append_row(rows: dict[str, list[Any]], r: ChunkRecord, *, n_chunks: int, error: str) -> None:
    for name, value in (
        ("id", r.id),
        ("source", r.source),
        ("title", r.title),
        ("chunk", r.chunk),
        ("chunk_index", r.chunk_index),
        ("doc_hash", r.doc_hash),
        ("breadcrumb", r.breadcrumb),
        ("origin", r.origin),
        ("n_chunks", n_chunks),
        ("error", error),
    ):
        rows[name].append(value)


def file_rows(table: pa.Table) -> pa.Table:
    """One row per file (its first chunk, or its error row): what the driver plans with."""
    first = table.filter(pc.less_equal(table["chunk_index"], 0))
    return first.select(["source", "doc_hash", "n_chunks", "error"])


def chunks_of(batch: dict[str, np.ndarray], sources: frozenset[str]) -> dict[str, np.ndarray]:
    """The chunks of the files the plan writes (not the unchanged ones, nor failed files' error rows)."""
    keep = np.fromiter(
        (
            str(s) in sources and int(i) >= 0
            for s, i in zip(batch["source"], batch["chunk_index"], strict=True)
        ),
        dtype=bool,
        count=len(batch["source"]),
    )
    return {k: v[keep] for k, v in batch.items() if k not in ("n_chunks", "error")}


def records_of(
    batch: dict[str, np.ndarray], tenant: str = DEFAULT_TENANT, groups: tuple[str, ...] = ()
) -> list[ChunkRecord]:
    """The chunks of a batch, placed in the run's tenant with its groups (one run, one placement)."""
    return [
        ChunkRecord(str(i), str(s), str(t), str(c), int(n), str(h), str(b), str(o), tenant, groups)
        for i, s, t, c, n, h, b, o in zip(
            batch["id"],
            batch["source"],
            batch["title"],
            batch["chunk"],
            batch["chunk_index"],
            batch["doc_hash"],
            batch["breadcrumb"],
            batch["origin"],
            strict=True,
        )
    ]
