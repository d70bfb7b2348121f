"""Structured filters, compiled to Milvus boolean expressions here and nowhere else.

Callers (the HTTP API, the CLI, ingestion) build a ``Filter`` from typed values; only the store turns it into
Milvus' expression language, quoting every value. No raw expression ever crosses a layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ragserve.limits import MAX_FILTER_SOURCES, check_source


@dataclass(frozen=True)
class Filter:
    """Chunks whose source is one of ``sources`` and/or starts with ``source_prefix`` (both: and)."""

    sources: tuple[str, ...] = ()
    source_prefix: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if len(self.sources) > MAX_FILTER_SOURCES:
            raise ValueError(f"sources: at most {MAX_FILTER_SOURCES} (got {len(self.sources)})")
        for s in self.sources:
            check_source(s, "sources")
        if self.source_prefix is not None:
            check_source(self.source_prefix, "source_prefix")
            if "\\" in self.source_prefix:  # Milvus' LIKE has no escape for a literal backslash
                raise ValueError("source_prefix: backslashes are not supported in a prefix")

    @classmethod
    def of_sources(cls, sources: Iterable[str]) -> Filter:
        found = tuple(sources)
        if not found:
            raise ValueError("sources: at least one source is required")
        return cls(sources=found)


DEFAULT_TENANT = "default"  # a single-tenant deployment's, the operator keys' and the CLI's without --tenant
MAX_TENANT_BYTES = 128  # the width of the chunk schema's tenant field
MAX_GROUPS = 64  # the capacity of its groups array
MAX_GROUP_BYTES = 128  # the width of each group


def check_tenant(value: str, field: str = "tenant") -> str:
    """A tenant name as stored: 1..MAX_TENANT_BYTES bytes of UTF-8, no control characters."""
    if not value or len(value.encode("utf-8")) > MAX_TENANT_BYTES or not value.isprintable():
        raise ValueError(f"{field}: a tenant is 1 to {MAX_TENANT_BYTES} bytes of printable text")
    return value


def check_groups(values: Iterable[str], field: str = "groups") -> tuple[str, ...]:
    """A document's groups as stored: sorted, without duplicates, at most MAX_GROUPS of 1..MAX_GROUP_BYTES
    bytes each. Empty: the document is visible to its whole tenant."""
    groups = tuple(sorted(set(values)))
    if len(groups) > MAX_GROUPS:
        raise ValueError(f"{field}: at most {MAX_GROUPS} groups (got {len(groups)})")
    for g in groups:
        if not g or len(g.encode("utf-8")) > MAX_GROUP_BYTES or not g.isprintable():
            raise ValueError(f"{field}: a group is 1 to {MAX_GROUP_BYTES} bytes of printable text")
    return groups


@dataclass(frozen=True)
class Access:
    """Whose documents a caller may read or change: one tenant's, and of those the ones without groups or
    sharing one of ``groups`` (None: every group). The store ANDs it into every expression it sends, so a
    client filter can narrow it but never widen it."""

    tenant: str
    groups: frozenset[str] | None = None


# The default tenant, every group: what a single-tenant deployment and the CLI without --tenant see.
DEFAULT_ACCESS = Access(DEFAULT_TENANT)


# Milvus Lite evaluates array expressions row by row over the whole collection (about 20 us a row, the
# tenant's partitions notwithstanding): `array_contains_any(groups, ...)` made hybrid search 10-17x slower
# at 10k-100k chunks (load-tests/results/tenant_cost.md). So the groups are also stored as one VARCHAR,
# each group hex-encoded between bars ("|6872|656e67|", "" for none), matched with an infix LIKE (Lite and
# servers from 2.4.3; a 2.3 server has no infix LIKE, and matches the array fast): no wildcard, quote or bar
# can occur in hex, so a group name can match only itself.
GROUP_KEYS_FIELD = "group_keys"
MAX_GROUP_KEYS_BYTES = MAX_GROUPS * (2 * MAX_GROUP_BYTES + 1) + 1


def group_keys(groups: Iterable[str]) -> str:
    """What GROUP_KEYS_FIELD stores for a chunk's (checked) groups."""
    hexed = [g.encode("utf-8").hex() for g in groups]
    return "|" + "|".join(hexed) + "|" if hexed else ""


def compile_access(access: Access, *, keys: bool = True) -> str:
    """Milvus' expression of an Access (the ``tenant`` and the groups fields of the chunk schema). ``keys``:
    match GROUP_KEYS_FIELD, else the ``groups`` array (a collection without the keys: a 2.3 server's)."""
    expr = f"tenant == {quote(access.tenant)}"
    if access.groups is None:
        return expr
    groups = sorted(access.groups)
    if keys:
        terms = [f'{GROUP_KEYS_FIELD} == ""']
        terms += [f"{GROUP_KEYS_FIELD} like {quote('%' + group_keys([g]) + '%')}" for g in groups]
    else:
        terms = ["array_length(groups) == 0"]
        terms += [f"array_contains_any(groups, [{', '.join(map(quote, groups))}])"] if groups else []
    return f"{expr} and ({' or '.join(terms)})"


def restricted(access: Access, expr: str = "", *, keys: bool = True) -> str:
    """``expr`` (a compiled filter, '' = everything) within what ``access`` may see: the only way the store
    builds the expression of a read, count or delete of chunks. ``keys``: as for compile_access."""
    return _all_of(compile_access(access, keys=keys), expr)


def quote(value: str) -> str:
    """A Milvus string literal: backslashes and double quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _like_prefix(prefix: str) -> str:
    """``like`` with a literal prefix: the pattern escapes % and _ (LIKE's wildcards), then the whole
    pattern is quoted as a string literal, so the expression holds two backslashes before each (Milvus
    rejects an expression with one)."""
    pattern = prefix.replace("%", "\\%").replace("_", "\\_") + "%"
    return f"source like {quote(pattern)}"


def _all_of(*exprs: str | None) -> str:
    return " and ".join(f"({e})" for e in exprs if e)


def compile_filter(f: Filter | None) -> str:
    """The Milvus expression of a filter ('' = everything)."""
    if f is None:
        return ""
    return _all_of(
        f"source in [{', '.join(quote(s) for s in f.sources)}]" if f.sources else None,
        _like_prefix(f.source_prefix) if f.source_prefix is not None else None,
    )


def stale_chunks(source: str, keep_hash: str) -> str:
    """Chunks of ``source`` written from any other version of the document than ``keep_hash``."""
    return f"source == {quote(source)} and doc_hash != {quote(keep_hash)}"
