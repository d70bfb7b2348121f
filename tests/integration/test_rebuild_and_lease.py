"""`ingest --rebuild` without downtime (an alias switched to a new collection) and the ingest lease that
keeps two runs from deleting each other's chunks: on Milvus Lite and on a real Milvus 2.3 server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragserve.config import AppConfig, load_config
from ragserve.ingest.pipeline import Ingestor
from ragserve.store.filters import DEFAULT_ACCESS
from ragserve.store.lease import Lease, LeaseBusyError, LeaseLostError
from ragserve.store.milvus import MilvusStore

STORES = ("lite", "server")  # each test that uses app_config runs on both (conftest)


class CachedEncoder:
    """The real encoder, each text embedded once: a rebuild re-embeds everything, and the test is about
    the switch, not about encoding the same pages three times on 2 cores."""

    def __init__(self, encoder: Any):
        self.encoder, self.dim, self.model_name = encoder, encoder.dim, encoder.model_name
        self.cache: dict[str, np.ndarray] = {}

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.encoder.embed_documents(missing), strict=True))
        return np.stack([self.cache[t] for t in texts])


@pytest.fixture(scope="module")
def cached(encoder) -> CachedEncoder:
    """One cache for the module: every test here ingests the same pages."""
    return CachedEncoder(encoder)


class RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "retrying" in record.getMessage()


class SearchLoad:
    """Threads searching and counting through the configured name, as the router does, until stopped."""

    def __init__(self, store: MilvusStore, query: np.ndarray, threads: int = 2):
        self.store, self.query = store, query
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.empty = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(threads)]
        # Reads that met the name mid-switch and were retried by the store (MilvusStore._read).
        self._log, self._retries = logging.getLogger("ragserve.store.connection"), RetryCounter()

    def _loop(self, i: int) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                found = (
                    self.store.count(access=DEFAULT_ACCESS)
                    if i % 2
                    else len(self.store.search(self.query, 5, access=DEFAULT_ACCESS)[0])
                )
            except Exception as err:  # every failure counts, whatever its type
                self.failures.append(f"{type(err).__name__}: {err}")
                continue
            self.latencies.append(time.perf_counter() - started)
            self.empty += found == 0
            time.sleep(0.002)  # load, not a busy loop starving the ingest of the 2 cores

    def __enter__(self) -> SearchLoad:
        self._level = self._log.level
        self._log.setLevel(logging.INFO)
        self._log.addHandler(self._retries)
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self._log.removeHandler(self._retries)
        self._log.setLevel(self._level)

    def figures(self) -> str:
        ms = np.array(self.latencies) * 1000
        sent = len(self.latencies) + len(self.failures)
        return (
            f"{sent} requests, {len(self.failures)} failed, {self.empty} empty, "
            f"{self._retries.count} retried by the store, "
            f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms"
        )


def collections(store: MilvusStore) -> set[str]:
    return {c for c in store.client.list_collections() if c.startswith(store.collection)}


def test_rebuild_switches_an_alias_while_searches_keep_answering(
    corpus_subset: Path, encoder, cached: CachedEncoder, app_config: AppConfig
) -> None:
    """Old code: --rebuild dropped the collection first, so searches failed for the whole run."""
    cfg = app_config.store
    writer = MilvusStore(cfg)
    # Lite: one process may open the file, so the readers share the writer's store (as the Lite owner's
    # clients share one server); on the server the readers have their own connection, like a router.
    reader = writer if cfg.is_lite else MilvusStore(cfg)
    ingestor = Ingestor(cached, writer, app_config.ingest)
    name = cfg.collection
    try:
        first = ingestor.run(corpus_subset)  # a plain collection, as every release before this one made
        assert writer.alias_target() is None and collections(writer) >= {name}
        reader.load()
        query = encoder.embed_queries(["How do I choose a similarity metric?"])
        gone = corpus_subset / "about" / "limitations.md"
        text = gone.read_text()
        gone.unlink()  # the rebuilds must show without it
        expected = first.chunks_new
        for step, physical in ((1, f"{name}__1"), (2, f"{name}__2")):
            with SearchLoad(reader, query) as load:
                time.sleep(0.5)  # readers running before the rebuild starts
                report = ingestor.run(corpus_subset, rebuild=True)
                time.sleep(1.5)  # and after the switch and the drop of the previous collection
            done = report.rebuild_switch
            assert done is not None and done.collection == physical
            print(
                f"rebuild {step} on {'Lite' if cfg.is_lite else 'server'} "
                f"({'migration: rename + create_alias' if step == 1 else 'alter_alias'}): "
                f"{load.figures()}; switch {done.switch_s * 1000:.1f} ms"
            )
            assert load.failures == [] and load.empty == 0
            assert report.rebuilt_from_chunks == expected
            expected = report.chunks_new
            assert writer.alias_target() == physical
            assert collections(writer) == {physical, f"{name}__lease"}  # the previous one is dropped
            assert reader.count(access=DEFAULT_ACCESS) == expected < first.chunks_new
            hits = reader.search(query, 5, access=DEFAULT_ACCESS)[0]
            assert hits and "about/limitations.md" not in {h.source for h in hits}
        # The name works for everything else as before: ingests write and prune through the alias.
        assert ingestor.run(corpus_subset).chunks_written == 0
        gone.write_text(text)
        back = ingestor.run(corpus_subset)
        assert back.files_written == 1 and reader.count(access=DEFAULT_ACCESS) == first.chunks_new
        gone.unlink()
        assert ingestor.run(corpus_subset, prune=True).sources_pruned == 1
        assert reader.count(access=DEFAULT_ACCESS) == expected and writer.alias_target() == f"{name}__2"
    finally:
        if reader is not writer:
            reader.close()
        writer.close()


class FailingEncoder:
    def __init__(self, encoder: CachedEncoder, fail_after: int):
        self.encoder, self.dim, self.model_name = encoder, encoder.dim, encoder.model_name
        self.calls, self.fail_after = 0, fail_after

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("the embedder died")
        return self.encoder.embed_documents(texts)


def test_a_failed_rebuild_keeps_the_current_collection(
    corpus_subset: Path, cached: CachedEncoder, store: MilvusStore, app_config: AppConfig
) -> None:
    """Old code: a rebuild that failed midway had already dropped the collection."""
    Ingestor(cached, store, app_config.ingest).run(corpus_subset)
    before = store.count(access=DEFAULT_ACCESS)
    small_groups = app_config.ingest.model_copy(update={"write_group_chunks": 32})
    failing = Ingestor(FailingEncoder(cached, fail_after=1), store, small_groups)
    with pytest.raises(RuntimeError, match="embedder died"):
        failing.run(corpus_subset, rebuild=True)  # one group written into the new collection, then dead
    assert store.alias_target() is None and store.count(access=DEFAULT_ACCESS) == before
    assert collections(store) == {store.collection, f"{store.collection}__lease"}  # the partial build: gone


# ---- the lease ----------------------------------------------------------------------------------------
@pytest.fixture()
def server_config(milvus_server: str, tmp_path: Path) -> AppConfig:
    return load_config(
        overrides={"store": {"uri": milvus_server, "collection": f"t_{tmp_path.name}"}},
        env={"RAGSERVE_HOME": str(tmp_path / "home")},
    )


@pytest.fixture()
def server_store(server_config: AppConfig) -> Iterator[MilvusStore]:
    s = MilvusStore(server_config.store)
    yield s
    s.close()


def test_a_second_ingest_is_refused_while_the_first_holds_the_lease(
    corpus_subset: Path, cached: CachedEncoder, server_config: AppConfig, server_store: MilvusStore
) -> None:
    """Old code: nothing stopped the second run; here it would have pruned a page the first one had just
    written (a --prune from a copy of the folder without it)."""
    Ingestor(cached, server_store, server_config.ingest).run(corpus_subset)
    page = corpus_subset / "reference" / "metric.md"
    page.write_text(page.read_text() + "\n\nEdited while another run prunes.\n")
    holding, go_on = threading.Event(), threading.Event()

    def hold(done: int, total: int) -> None:  # the first run pauses after its first write group
        holding.set()
        go_on.wait(60)

    first_store = MilvusStore(server_config.store)
    results: dict[str, Any] = {}

    def first_run() -> None:
        try:
            results["first"] = Ingestor(cached, first_store, server_config.ingest).run(
                corpus_subset, progress=hold
            )
        except Exception as err:
            results["first"] = err

    runner = threading.Thread(target=first_run)
    runner.start()
    try:
        assert holding.wait(120), "the first run never wrote"
        before = server_store.count(access=DEFAULT_ACCESS, latest=True)
        (corpus_subset / "about" / "limitations.md").unlink()  # gone from PATH: --prune would delete it
        with pytest.raises(LeaseBusyError, match=r"ingest .* pid \d+ .*lease expires at") as busy:
            Ingestor(cached, server_store, server_config.ingest).run(corpus_subset, prune=True)
        print(f"second run refused: {busy.value}")
        assert server_store.count(access=DEFAULT_ACCESS, latest=True) == before  # nothing deleted
        env = {**os.environ, "RAGSERVE_HOME": str(server_config.data_dir)}
        env["RAGSERVE__STORE__URI"] = str(server_config.store.uri)
        command = ["ingest", str(corpus_subset), "--prune", "--collection", server_config.store.collection]
        cli = subprocess.run(
            [sys.executable, "-m", "ragserve.cli", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 75, cli.stderr
        assert "being written by another ingest run" in cli.stderr
    finally:
        go_on.set()
        runner.join()
        first_store.close()
    assert not isinstance(results["first"], Exception), results["first"]
    pruned = Ingestor(cached, server_store, server_config.ingest).run(corpus_subset, prune=True)
    assert pruned.sources_pruned == 1  # once the first run released its lease


def test_an_expired_lease_is_taken_over_and_its_holder_learns_it(store: MilvusStore) -> None:
    """A run that crashed (its heartbeat stopped) blocks others only until its lease expires; a holder whose
    lease was taken over sees it at its next heartbeat, and check() stops it before a destructive step."""
    store.ensure_collection(8, "m")
    crashed = Lease(store, "ingest /a", ttl_s=2.0, heartbeat_s=4.0)
    crashed.acquire()
    with pytest.raises(LeaseBusyError, match=r"ingest /a on .* pid"):
        Lease(store, "ingest /b").acquire()
    time.sleep(2.0)  # expired: its first renewal is due only 4 s after it was taken
    with Lease(store, "ingest /b") as taker:
        assert store.client is not None and taker.read() is not None
        assert taker.read()[0] == taker.holder  # type: ignore[index]
        time.sleep(2.5)  # the first holder's heartbeat runs and finds the taker
        with pytest.raises(LeaseLostError, match="taken over by ingest /b"):
            crashed.check()
        crashed.release()  # deletes only its own row: the taker's stays
        assert taker.read()[0] == taker.holder  # type: ignore[index]
    assert taker.read() is None
    with Lease(store, "ingest /c"):  # free again
        pass
