"""Milvus boolean expressions built from structured values only (never from raw client text)."""

from __future__ import annotations

from collections.abc import Sequence


def quote(value: str) -> str:
    """A Milvus string literal: backslashes and double quotes escaped, control characters rejected."""
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise ValueError("control characters are not allowed in filter values")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_in(sources: Sequence[str]) -> str:
    if not sources:
        raise ValueError("at least one source is required")
    return f"source in [{', '.join(quote(s) for s in sources)}]"


def source_prefix(prefix: str) -> str:
    """Sources under a folder or URL prefix (``like`` with % and _ escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace('"', '\\"')
    return f'source like "{escaped}%"'


def stale_chunks(source: str, keep_hash: str) -> str:
    """Chunks of ``source`` written from any other version of the document than ``keep_hash``."""
    return f"source == {quote(source)} and doc_hash != {quote(keep_hash)}"


def all_of(*exprs: str | None) -> str:
    parts = [f"({e})" for e in exprs if e]
    return " and ".join(parts)
