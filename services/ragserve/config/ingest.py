"""Document ingestion: chunking, file limits, and the Ray Data stages of `ingest --ray`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ragserve.config.base import Section


class IngestRayConfig(Section):
    """``ragserve ingest --ray``: the Ray Data stages' parallelism and resources. No defaults in code: each
    profile states them for the cluster it targets (docs/configuration.md, docs/kubernetes.md)."""

    parse_concurrency: int = Field(
        ge=1, le=10_000, description="Most read+parse+chunk tasks at once (1 CPU each, on CPU workers)."
    )
    embed_actors: int = Field(
        ge=1, le=1000, description="Embedding actors; each loads the model once and encodes its blocks."
    )
    embed_batch_size: int = Field(
        ge=1,
        le=100_000,
        description="Chunks handed to an embedding actor per call (map_batches batch_size); the encoder "
        "splits them into forward passes of embedder.batch_size.",
    )
    num_cpus_per_actor: float = Field(ge=0, description="Logical CPUs reserved per embedding actor.")
    num_gpus_per_actor: float = Field(ge=0, description="GPUs reserved per embedding actor (0 = CPU).")
    write_concurrency: int = Field(
        ge=1, le=1000, description="Writer actors upserting into Milvus (store.write_batch_size rows a call)."
    )
    max_restarts: int = Field(
        ge=-1,
        description="Restarts of a dead embedding or writer actor (-1 = unlimited); its block is retried.",
    )


class IngestConfig(Section):
    chunk_size: int = Field(512, ge=32, le=16_000, description="Maximum characters per chunk.")
    chunker: Literal["recursive", "structured"] = Field(
        "structured",
        description="recursive: the walkthrough's character splitter; structured: sections and paragraphs, "
        "fenced code kept whole, each chunk with its heading breadcrumb (Title > Section > Subsection): "
        "better hit rate, recall and nDCG than recursive on both question sets (load-tests/RESULTS.md).",
    )
    chunk_overlap: int | None = Field(
        None, ge=0, description="Characters shared by neighbouring chunks (default: 10% of chunk_size)."
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".html", ".htm", ".md", ".markdown", ".txt", ".pdf"],
        description="File extensions ingested; others are skipped.",
    )
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are skipped with a warning.")
    file_time_limit_s: float = Field(
        60.0,
        gt=0,
        description="Seconds text extraction may take per PDF, checked between pages and drawing operators; "
        "a PDF over it fails alone with that reason. Other formats parse in time linear in their size.",
    )
    write_group_chunks: int = Field(
        512, ge=1, le=100_000, description="Chunks embedded and written together (several files per group)."
    )
    embed_title: bool = Field(
        True, description="Embed 'title + newline + chunk' (the stored chunk stays plain): better recall."
    )
    ray: IngestRayConfig | None = Field(
        None, description="`ingest --ray` (Ray Data): concurrency and resources; both profiles state it."
    )

    @model_validator(mode="after")
    def _default_overlap(self) -> IngestConfig:
        if self.chunk_overlap is None:
            self.chunk_overlap = round(self.chunk_size * 0.10)
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be below chunk_size ({self.chunk_size})"
            )
        return self

    @field_validator("extensions")
    @classmethod
    def _normalize_extensions(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one extension is required")
        return [e.lower() if e.startswith(".") else f".{e.lower()}" for e in v]
