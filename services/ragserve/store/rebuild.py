"""Rebuilds without downtime: a new collection built behind the configured name, then one alias switch.

``store.collection`` (the name users configure and the router searches) becomes a Milvus alias after the
first rebuild: ``NAME -> NAME__1``, then ``NAME__2``, ... A rebuild writes into the next collection while
the current one keeps answering, then ``alter_alias`` moves the name in one call (milliseconds, checked
on Milvus Lite 3.2 and a Milvus 2.3 server) and the previous collection is dropped a moment later. Searches
and queries through an alias resolve to its collection on Lite and server alike; nothing else changes for
readers.

A collection created before aliases (a plain collection called NAME) is migrated by its first rebuild: an
alias cannot share a name with a collection, so NAME is renamed to ``NAME__0`` and the alias created right
after. Between those two calls (about 10 ms on the 2.3 server, 50-100 ms on Lite) the name resolves to
nothing; MilvusStore's reads retry that error briefly, so searches wait instead of failing. Renaming rather
than dropping first keeps the old data until the alias exists, and a 2.3 proxy kept answering through it
(a drop first cost a few "collection not found" errors there).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from ragserve.store.connection import STRONG
from ragserve.store.milvus import MilvusStore
from ragserve.store.schema import EMBEDDER_PROPERTY

log = logging.getLogger(__name__)
SEPARATOR = "__"
RETIRED = 0  # NAME__0: a pre-alias collection on its way out
# In-flight reads that resolved the name just before the switch finish on the previous collection: it is
# dropped this long after the switch, not at once.
DROP_GRACE_S = 1.0


@dataclass(frozen=True)
class Switch:
    """What a finished rebuild did: the collection the name now points at, the one it replaced (dropped),
    and how long the name took to move (alter_alias; rename + create_alias when migrating)."""

    collection: str
    previous: str | None
    switch_s: float


def current_collection(store: MilvusStore) -> str | None:
    """The collection store.collection names now: an alias' target, a plain collection itself, or None."""
    target = store.alias_target()
    if target is not None:
        return target
    return store.collection if store.has_collection() else None


def begin(store: MilvusStore) -> MilvusStore:
    """A view of ``store`` on a new, empty collection for the rebuild (created by its ensure_collection).
    A leftover of an interrupted rebuild under that name is dropped: no alias points at it."""
    current = current_collection(store)
    pattern = rf"{re.escape(store.collection)}{SEPARATOR}(\d+)"
    m = re.fullmatch(pattern, current or "")
    name = f"{store.collection}{SEPARATOR}{int(m[1]) + 1 if m else 1}"
    new = store.view(name)
    if new.has_collection():
        log.warning("dropping %s, left by an interrupted rebuild (no alias points at it)", name)
        new.drop()
    return new


def abandon(new: MilvusStore) -> None:
    """A failed rebuild: drop its collection (best effort); the name still points at the previous one."""
    try:
        new.drop()
    except Exception:  # the error that brought us here matters more; begin() drops it next time anyway
        log.warning("could not drop %s after a failed rebuild", new.collection, exc_info=True)


def switch(store: MilvusStore, new: MilvusStore, grace_s: float = DROP_GRACE_S) -> Switch:
    """Point store.collection at ``new`` and drop what it named before. ``new`` is loaded and caught up
    first (a Strong query waits until its query nodes hold every write), so a Bounded search right after
    the switch already sees the whole build."""
    name, built = store.collection, new.collection
    store._rpc("load", store.client.load_collection, built)
    store._rpc(
        "query", store.client.query, built, filter="", output_fields=["count(*)"], consistency_level=STRONG
    )
    aliased = store.alias_target()
    previous = aliased or (name if store.has_collection() else None)
    if previous is not None:
        _carry_properties(store, previous, built)
    started = time.perf_counter()
    if aliased is not None:
        store._rpc("alter_alias", store.client.alter_alias, built, name)
    elif previous is not None:  # a pre-alias collection: free the name, then alias it
        retired = store.view(f"{name}{SEPARATOR}{RETIRED}")
        retired.drop()  # a leftover of an interrupted migration
        store._rpc("rename_collection", store.client.rename_collection, name, retired.collection)
        store._rpc("create_alias", store.client.create_alias, built, name)
        previous = retired.collection
    else:
        store._rpc("create_alias", store.client.create_alias, built, name)
    switch_s = time.perf_counter() - started
    log.info("%s now names %s (switched in %.1f ms)", name, built, switch_s * 1000)
    if previous is not None:
        time.sleep(grace_s)
        store._rpc("drop_collection", store.client.drop_collection, previous)
    return Switch(built, previous, switch_s)


def _carry_properties(store: MilvusStore, previous: str, built: str) -> None:
    """Properties an operator set on the previous collection (TTL, mmap) move to the new one; the embedder
    property is the new build's own."""
    desc = store._rpc("describe_collection", store.client.describe_collection, previous)
    carried = {k: v for k, v in (desc.get("properties") or {}).items() if k != EMBEDDER_PROPERTY}
    if carried:
        store._rpc("alter_collection_properties", store.client.alter_collection_properties, built, carried)
