"""The connection to Milvus: a Milvus Lite file opened in place, or a server (http(s) URI + token) that a
Milvus Lite owner may move to another port (``locate`` follows it). Every call goes through ``_rpc``, so a
failure is a StoreError naming the operation; reads that meet a collection's name mid-switch are retried.
"""

from __future__ import annotations

import copy
import fcntl
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from pymilvus import MilvusClient, MilvusException

from ragserve.config import StoreConfig

log = logging.getLogger(__name__)

STRONG = "Strong"  # the consistency level of reads that plan writes and deletes
# A read that meets the collection's name mid-switch (a rebuild renaming a pre-alias collection away, a
# proxy still caching the collection it named) waits this long between tries instead of failing the request.
SWITCH_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)
# "incomplete query result": a 2.3 server searched the previous collection and fetched the hits' fields
# after it was dropped.
_SWITCHING = re.compile(
    r"not exist|not found|can't find|released|loading|not loaded|incomplete query result", re.IGNORECASE
)


class StoreError(RuntimeError):
    """Milvus is unreachable or refused an operation."""


def lite_locked(path: Path) -> bool:
    """True when another process holds Milvus Lite's lock on ``path``."""
    lock = path / "LOCK"
    if not lock.exists():
        return False
    with lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


class Connection:
    """What every part of MilvusStore stands on: the client, the collection's name and what its schema
    allows (learnt by ``Schema.ensure_collection``)."""

    def __init__(
        self,
        cfg: StoreConfig,
        *,
        require_bm25: bool = False,
        locate: Callable[[], str] | None = None,
    ):
        """``require_bm25``: hybrid retrieval is configured, so a collection without the BM25 field is
        refused (with the command that rebuilds it) instead of silently serving dense results only.

        ``locate``: returns the server's URI now, waiting while it restarts (a Milvus Lite owner replaced
        by a rollout listens on a new port). A failed call asks it once; when the server has moved, the
        store reconnects and retries the call there, so a rollout costs latency, not errors."""
        if cfg.uri is None:
            raise StoreError("store.uri is not set")
        self.cfg = cfg
        self._locate = locate
        self._moving = threading.Lock()
        self.collection = cfg.collection
        self.require_bm25 = require_bm25
        self.has_sparse = False  # the collection has the BM25 field (known after ensure_collection)
        self.has_origin = False  # the collection records each document's origin (ORIGIN_FIELD)
        self.has_access = False  # the collection has the tenant and groups fields (refused without)
        self.has_group_keys = False  # ... and GROUP_KEYS_FIELD (all but a 2.3 server's): matched, not groups
        # The Milvus Lite file (None for a server URI).
        self.lite_path = Path(cfg.uri).expanduser() if cfg.is_lite else None
        if self.lite_path is not None:
            self.lite_path.parent.mkdir(parents=True, exist_ok=True)
        self.client = self._connect(cfg)
        self._owns_client = True

    def view(self, collection: str) -> Self:
        """The same connection, working on another collection (a rebuild's new one): closing the view
        leaves the connection to its owner."""
        other = copy.copy(self)
        other.cfg = self.cfg.model_copy(update={"collection": collection})
        other.collection = collection
        other.has_sparse = other.has_origin = other.has_group_keys = False  # learnt by its ensure_collection
        other._owns_client = False
        return other

    def _connect(self, cfg: StoreConfig) -> MilvusClient:
        token = cfg.token.get_secret_value() if cfg.token else ""
        try:
            return MilvusClient(
                uri=str(self.lite_path or cfg.uri),
                token=token,
                db_name=cfg.db_name,
                timeout=cfg.timeout_s,
            )
        except Exception as err:  # pymilvus raises several unrelated types on connect
            if self.lite_path is not None and lite_locked(self.lite_path):
                raise StoreError(
                    f"the Milvus Lite file {cfg.uri} is in use by another process (a running "
                    "`ragserve serve` or ingest); wait for it, or send documents to POST /v1/documents"
                ) from err
            raise StoreError(f"cannot connect to Milvus at {cfg.uri}: {err}") from err

    def reconnect(self, uri: str) -> None:
        """Talk to the same Milvus at another server URI from now on (a restarted Milvus Lite owner listens
        on a new port); calls already running on the old connection fail as they would have anyway."""
        if self.lite_path is not None:
            raise StoreError("a Milvus Lite file is opened in place, not reconnected")
        cfg = self.cfg.model_copy(update={"uri": uri})
        client = self._connect(cfg)
        # Loaded before other threads see the new client (a search there before would fail "not loaded");
        # straight calls, not _rpc: a failure here must not ask locate() again from inside follow().
        if self._call("has_collection", client.has_collection, self.collection):
            self._call("load", client.load_collection, self.collection)
        old, self.client, self.cfg = self.client, client, cfg
        try:
            old.close()
        except Exception:  # the old server is gone: nothing to close cleanly
            log.debug("error closing the previous Milvus client", exc_info=True)

    def follow(self, since: str | None = None) -> bool:
        """Ask ``locate`` where the server is and reconnect if it moved. ``since``: the URI a failed call
        used (another thread may have followed already). True when the URI differs from ``since``."""
        if self._locate is None:
            return False
        since = since or self.cfg.uri
        try:
            uri = self._locate()
        except Exception:  # the owner is still restarting, or gone: the caller's error stands
            log.info("cannot locate the Milvus server", exc_info=True)
            return False
        with self._moving:
            if uri != self.cfg.uri:
                log.info("the Milvus server moved from %s to %s: reconnecting", self.cfg.uri, uri)
                self.reconnect(uri)
        return uri != since

    def _rpc(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (usually a method of ``self.client``); failures become StoreError naming the
        operation. With ``locate``, a client method that failed because the server moved is called once
        more, on the new client (an iterator's ``next`` is not: its cursor lived on the old server)."""
        uri, client = self.cfg.uri, self.client
        try:
            return self._call(what, fn, *args, **kwargs)
        except StoreError:
            if getattr(fn, "__self__", None) is not client or not self.follow(since=uri):
                raise
            return self._call(what, getattr(self.client, fn.__name__), *args, **kwargs)

    def _read(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``_rpc`` for a read that may meet the collection's name mid-switch: a rebuild's alias switch
        (store/rebuild.py) can leave the name unresolved for a few milliseconds, and a proxy may still hold
        the dropped collection it named. Such errors are retried for about 1.5 s; any other one is not."""
        for delay in SWITCH_RETRY_DELAYS_S:
            try:
                return self._rpc(what, fn, *args, **kwargs)
            except StoreError as err:
                if not _SWITCHING.search(str(err)):
                    raise
                log.info("Milvus %s on %r: retrying in %.2f s (%s)", what, self.collection, delay, err)
                time.sleep(delay)
        return self._rpc(what, fn, *args, **kwargs)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MilvusException as err:
            raise StoreError(f"Milvus {what} on {self.collection!r} failed: {err.message}") from err
        except (ConnectionError, TimeoutError, OSError) as err:
            raise StoreError(f"Milvus {what} on {self.collection!r} failed: {err}") from err

    def has_collection(self) -> bool:
        return bool(self._rpc("has_collection", self.client.has_collection, self.collection))

    def load(self) -> None:
        """Load the collection for reads (a restarted Milvus holds it released)."""
        self._rpc("load", self.client.load_collection, self.collection)

    def close(self) -> None:
        if not self._owns_client:  # a view: the connection is its owner's
            return
        try:
            self.client.close()
            if (
                self.lite_path is not None
            ):  # pymilvus keeps an in-process Lite server (and its lock) until exit
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(self.lite_path))
        except Exception:  # closing a dead connection must not mask the real error
            log.debug("error closing Milvus client", exc_info=True)
