"""One ingest run at a time per collection: a lease stored in Milvus itself.

Two ingest runs against the same Milvus server can delete each other's chunks (a stale version the other
just wrote, a prune, a rebuild's switch). Milvus Lite is locked by its file; a server has no lock, so each
run holds a lease: one row in a small collection ``NAME__lease`` (id, holder, expiry), taken before the run
touches the collection, renewed by a heartbeat thread, deleted at the end. A run that finds another
holder's live lease stops with LeaseBusyError naming the holder and its expiry; an expired lease (its
holder crashed or lost the network) is taken over, and so is the lease of a process on this host that no
longer exists (a run killed outright; its rerun need not wait out the TTL).

Milvus has no compare-and-set, so taking the lease is: read (Strong), write our row (upsert), wait
``settle_s``, read back (Strong) and keep it only if our row is still there. Writes are ordered by Milvus'
timestamps, so when two runs overlap the later write wins and the earlier writer sees it on read-back.
The window left: a run that read "free" and then took longer than ``settle_s`` to write (a pause of
seconds between two calls) can overwrite a lease whose holder already read itself back; both then run
until the overwritten holder's next heartbeat, which finds the other holder, logs it and marks the lease
lost (``Lease.check`` raises LeaseLostError before a rebuild's switch and at the end of a run). Expiry
compares wall clocks of different machines: keep the clocks in sync well within ``ttl_s``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from types import TracebackType

from pymilvus import DataType

from ragserve.store.connection import STRONG, StoreError
from ragserve.store.filters import quote
from ragserve.store.milvus import MilvusStore

log = logging.getLogger(__name__)
SUFFIX = "__lease"
ROW_ID = "lease"
TTL_S = 60.0  # a crashed run blocks others at most this long
HEARTBEAT_S = 15.0  # renewals per TTL: four, so one or two failed renewals do not lose the lease
SETTLE_S = 0.5  # between writing our row and reading it back


class LeaseBusyError(RuntimeError):
    """Another run holds the collection's lease."""


class LeaseLostError(RuntimeError):
    """Our lease was taken over while the run went on (it expired, or another run wrote over it)."""


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_HOLDER = re.compile(r" on (?P<host>\S+) pid (?P<pid>\d+) \[[0-9a-f]{8}\]$")


def holder_is_gone(holder: str) -> bool:
    """True when ``holder`` names a process of this host that no longer exists: a run killed outright
    (SIGKILL, OOM) never releases its lease, and the run that follows it on the same machine (a rerun, the
    next RayJob attempt in the same pod) need not wait out the TTL. Another host's holder is never judged."""
    found = _HOLDER.search(holder)
    if found is None or found["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(found["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, run by another user
        return False
    return False


class Lease:
    """``with Lease(store, "ingest /docs"):`` holds store.collection's lease for the block."""

    def __init__(
        self,
        store: MilvusStore,
        purpose: str,
        *,
        ttl_s: float = TTL_S,
        heartbeat_s: float = HEARTBEAT_S,
        settle_s: float = SETTLE_S,
    ):
        self.store = store
        self.name = store.collection + SUFFIX
        # Readable in the other run's error message, unique even for two runs in one process.
        self.holder = f"{purpose[:300]} on {socket.gethostname()} pid {os.getpid()} [{uuid.uuid4().hex[:8]}]"
        self.ttl_s, self.heartbeat_s, self.settle_s = ttl_s, heartbeat_s, settle_s
        self.lost: str | None = None  # why the lease was lost, set by the heartbeat
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ---- the record ---------------------------------------------------------------------------------
    def _ensure(self) -> None:
        """Create the lease collection, or load it: a restarted server or a reopened Lite file holds it
        released, and a read would fail."""
        client = self.store.client
        if self.store._rpc("has_collection", client.has_collection, self.name):
            self.store._rpc("load", client.load_collection, self.name)
            return
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="ragserve lease")
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
        schema.add_field("holder", DataType.VARCHAR, max_length=1024)
        schema.add_field("expires_ms", DataType.INT64)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus 2.3 requires a vector field
        index = client.prepare_index_params()
        index.add_index(field_name="v", index_type="FLAT", metric_type="L2")
        try:
            self.store._rpc(
                "create_collection", client.create_collection, self.name, schema=schema, index_params=index
            )
        except StoreError:
            if not self.store._rpc("has_collection", client.has_collection, self.name):
                raise  # not a run that created it at the same moment
            self.store._rpc("load", client.load_collection, self.name)

    def read(self) -> tuple[str, int] | None:
        """(holder, expiry in ms since the epoch) of the recorded lease, or None."""
        rows = self.store._rpc(
            "query",
            self.store.client.query,
            self.name,
            filter=f"id == {quote(ROW_ID)}",
            output_fields=["holder", "expires_ms"],
            consistency_level=STRONG,
        )
        return (str(rows[0]["holder"]), int(rows[0]["expires_ms"])) if rows else None

    def _write(self) -> None:
        expires = int((time.time() + self.ttl_s) * 1000)
        row = {"id": ROW_ID, "holder": self.holder, "expires_ms": expires, "v": [0.0, 0.0]}
        self.store._rpc("upsert", self.store.client.upsert, self.name, [row])

    # ---- taking, keeping, giving back ---------------------------------------------------------------
    def acquire(self) -> None:
        self._ensure()
        self._refuse_if_held()
        self._write()
        time.sleep(self.settle_s)
        self._refuse_if_held()  # another run wrote after us: it won
        self._beat = threading.Thread(target=self._heartbeat, name="ingest-lease", daemon=True)
        self._beat.start()
        log.info("holding the lease on %s as %s", self.store.collection, self.holder)

    def _refuse_if_held(self) -> None:
        found = self.read()
        if found is None or found[0] == self.holder:
            return
        holder, expires_ms = found
        if expires_ms <= time.time() * 1000:
            log.warning("taking over the expired lease of %s (expired %s)", holder, _when(expires_ms))
            return
        if holder_is_gone(holder):
            log.warning("taking over the lease of %s: that process no longer runs on this host", holder)
            return
        raise LeaseBusyError(
            f"collection {self.store.collection!r} is being written by another ingest run ({holder}); its "
            f"lease expires at {_when(expires_ms)} unless renewed. Wait for that run to finish, then retry"
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                found = self.read()
                if found is not None and found[0] != self.holder:
                    self.lost = f"the lease on {self.store.collection!r} was taken over by {found[0]}"
                    log.error("%s: this run no longer excludes others", self.lost)
                    return
                self._write()
            except Exception:  # Milvus briefly away: the next beat tries again, within the TTL
                log.warning("could not renew the lease on %s", self.store.collection, exc_info=True)

    def check(self) -> None:
        """Raise LeaseLostError when the heartbeat found another holder (call before destructive steps)."""
        if self.lost is not None:
            raise LeaseLostError(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:  # only our own row: a run that took over an expired lease keeps its own
            expr = f"id == {quote(ROW_ID)} and holder == {quote(self.holder)}"
            self.store._rpc("delete", self.store.client.delete, self.name, filter=expr)
        except Exception:  # it expires by itself within the TTL
            log.warning("could not release the lease on %s", self.store.collection, exc_info=True)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, holder={self.holder!r})"
