"""`ingest --ray` (Ray Data) against the local ingest: same collection, same plan, and faults survived.

Real components: a local Ray, the bundled MiniLM in the embedding actors, Milvus Lite owned by one actor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragserve.config import AppConfig, load_config
from ragserve.ingest.distributed import ingest_on_ray
from ragserve.ingest.pipeline import Ingestor
from ragserve.ingest.plan import IngestReport
from ragserve.ingest.sources import IngestError
from ragserve.store.filters import DEFAULT_ACCESS
from ragserve.store.milvus import MilvusStore
from tests.conftest import copy_subset

pytestmark = pytest.mark.slow
FIELDS = ["id", "source", "title", "chunk", "chunk_index", "doc_hash", "tenant", "groups", "origin", "vector"]
# Compared between two runs: all but the origin (each run's own root) and the vector (with a tolerance).
SAME = [f for f in FIELDS if f not in ("origin", "vector")]
# Small batches: many blocks, so a fault lands midway through the writes. One embedding actor: on 2 cores a
# second one spends its model load competing with the first for a job this size (the identity test has two).
SMALL = {"ingest": {"ray": {"embed_batch_size": 16, "embed_actors": 1}}, "store": {"write_batch_size": 16}}
TWO_ACTORS = {"ingest": {"ray": {**SMALL["ingest"]["ray"], "embed_actors": 2}}}


def config(home: Path, **extra: Any) -> AppConfig:
    return load_config(env={"RAGSERVE_HOME": str(home)}, overrides={**SMALL, **extra})


def rows(cfg: AppConfig) -> dict[str, dict[str, Any]]:
    """id -> row of the whole collection; fails on a duplicate id."""
    store = MilvusStore(cfg.store)
    try:
        store.load()
        found = list(store._iterate(FIELDS))
        assert store.count(access=DEFAULT_ACCESS) == len(found)
    finally:
        store.close()
    by_id = {r["id"]: r for r in found}
    assert len(by_id) == len(found), "duplicate ids"
    return by_id


def rows_when_released(cfg: AppConfig) -> dict[str, dict[str, Any]]:
    """rows() once the killed run's processes are gone: Ray stops its actor (the Lite file's owner) a few
    seconds after the driver died, and until then the file is locked."""
    from ragserve.store.connection import lite_locked

    path = Path(str(cfg.store.uri))
    for _ in range(120):
        if not lite_locked(path):
            break
        time.sleep(0.5)
    return rows(cfg)


def assert_same_collection(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for key, row in a.items():
        other = b[key]
        assert {f: row[f] for f in SAME} == {f: other[f] for f in SAME}
        np.testing.assert_allclose(row["vector"], other["vector"], atol=1e-5)


def local(cfg: AppConfig, encoder: Any, docs: Path, **kw: Any) -> IngestReport:
    store = MilvusStore.for_app(cfg)
    try:
        return Ingestor(encoder, store, cfg.ingest).run(docs, **kw)
    finally:
        store.close()


def comparable(report: IngestReport) -> dict[str, object]:
    return {k: v for k, v in report.as_dict().items() if k not in ("seconds", "chunks_per_s")}


@pytest.fixture(scope="module")
def reference(
    encoder, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[IngestReport, dict[str, dict[str, Any]]]:
    """The local ingest of the unedited subset, and its rows: what every faulty or remote run must equal.
    Ingested once for the module (encoding is most of an ingest's time)."""
    work = tmp_path_factory.mktemp("reference")
    cfg = config(work / "home")
    report = local(cfg, encoder, copy_subset(corpus_dir, work / "docs"))
    return report, rows(cfg)


def test_ray_ingest_equals_local_ingest(ray_cluster, encoder, corpus_subset: Path, tmp_path: Path) -> None:
    (corpus_subset / "broken.md").write_bytes(b"not\x00text")
    here, there = config(tmp_path / "local"), config(tmp_path / "ray", **TWO_ACTORS)

    first_local, first_ray = local(here, encoder, corpus_subset), ingest_on_ray(there, corpus_subset)
    assert comparable(first_ray) == comparable(first_local)
    assert first_ray.files_failed == [("broken.md", "binary file (contains NUL bytes), not text")]
    assert first_ray.chunks_new > 50
    assert_same_collection(rows(here), rows(there))
    print(f"identity: {len(rows(there))} chunks, same ids/texts/vectors; report {comparable(first_ray)}")

    again = ingest_on_ray(there, corpus_subset)
    assert (again.chunks_written, again.files_unchanged) == (0, first_ray.files_written)

    edited = corpus_subset / "reference" / "metric.md"
    edited.write_text(edited.read_text() + "\n\n## Added\n\nA new closing section about metrics.\n")
    before = {k: r for k, r in rows(there).items() if r["source"] == "reference/metric.md"}
    changed_local, changed_ray = local(here, encoder, corpus_subset), ingest_on_ray(there, corpus_subset)
    assert comparable(changed_ray) == comparable(changed_local)
    assert changed_ray.files_written == 1 and changed_ray.chunks_deleted == len(before)
    after = rows(there)
    assert not before.keys() & after.keys()  # the old version's chunks are gone, the others untouched
    assert_same_collection(rows(here), after)
    print(f"edited: {len(before)} old chunks replaced by {changed_ray.chunks_updated}; {len(after)} in all")

    # --prune deletes only what this root wrote and is gone: not a file that fails to load this run (its
    # stored chunks stay), not another root's documents.
    (corpus_subset / "about" / "limitations.md").unlink()
    edited.write_bytes(b"\xff\xfe not UTF-8 \xc3\x28")
    other = tmp_path / "other-root"
    other.mkdir()
    (other / "elsewhere.md").write_text("# Elsewhere\n\nA page ingested from another folder.\n")
    local(here, encoder, other), local(there, encoder, other)
    kept_edited = {k for k, r in rows(there).items() if r["source"] == "reference/metric.md"}
    pruned_local = local(here, encoder, corpus_subset, prune=True)
    pruned_ray = ingest_on_ray(there, corpus_subset, prune=True)
    assert comparable(pruned_ray) == comparable(pruned_local)
    assert pruned_ray.sources_pruned == 1 and pruned_ray.chunks_written == 0
    after_prune = rows(there)
    assert {k for k, r in after_prune.items() if r["source"] == "reference/metric.md"} == kept_edited
    assert any(r["source"] == "elsewhere.md" for r in after_prune.values())
    assert not any(r["source"] == "about/limitations.md" for r in after_prune.values())
    assert_same_collection(rows(here), after_prune)
    print(f"second run: {again.chunks_written} written; pruned: {pruned_ray.chunks_deleted} chunks deleted")

    # --rebuild: dropped, then created again by the first writer from the real vectors (no model probe).
    # A rebuild starts empty: the unreadable file and the other root's page are not in it.
    kept = rows(there)
    gone = {k for k, r in kept.items() if r["source"] in ("reference/metric.md", "elsewhere.md")}
    rebuilt = ingest_on_ray(there, corpus_subset, rebuild=True)
    assert rebuilt.rebuilt_from_chunks == len(kept) and rebuilt.chunks_new == len(kept) - len(gone)
    assert_same_collection({k: r for k, r in rows(here).items() if k not in gone}, rows(there))


def test_ray_ingest_reads_object_storage(ray_cluster, reference, corpus_subset: Path, tmp_path: Path) -> None:
    """s3:// through pyarrow.fs, from moto's S3 server on 127.0.0.1 (a real S3 API over HTTP): the same
    collection as the local ingest of the same files; a prefix with nothing under it, a bad URI and one
    without a bucket are clear errors that do not echo the credentials."""
    import socket

    from moto.server import ThreadedMotoServer
    from pyarrow import fs as pafs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = {"endpoint_override": f"127.0.0.1:{port}", "scheme": "http", "region": "us-east-1"}
        s3 = pafs.S3FileSystem(access_key="k", secret_key="s", allow_bucket_creation=True, **endpoint)
        s3.create_dir("docs")
        pafs.copy_files(str(corpus_subset), "docs/corpus", destination_filesystem=s3)
        # Credentials in the URI's user part reach every Ray worker with it (env vars work as well).
        uri = "s3://k:s@docs/corpus?" + "&".join(f"{k}={v}" for k, v in endpoint.items())
        there = config(tmp_path / "s3")
        from_s3 = ingest_on_ray(there, uri)
        assert comparable(from_s3) == comparable(reference[0])
        assert from_s3.chunks_new > 50
        assert_same_collection(reference[1], rows(there))
        with pytest.raises(IngestError, match="does not exist") as missing:
            ingest_on_ray(there, uri.replace("/corpus?", "/nothing?"))
        with pytest.raises(IngestError, match=r"cannot list .*'bogus'") as bad:
            ingest_on_ray(there, uri + "&bogus=1")
        with pytest.raises(IngestError, match="name a bucket"):
            ingest_on_ray(there, "s3://k:s@?" + uri.split("?")[1])
        assert "k:s@" not in str(missing.value) + str(bad.value)  # the credentials are not echoed
    finally:
        server.stop()


def embedding_actor_pids() -> list[int]:
    """Live embedding actors of this Ray, from the GCS actor table (works without the dashboard)."""
    import psutil
    from ray._private import state

    pids = []
    for info in state.actors(actor_state_name="ALIVE").values():
        try:
            title = " ".join(psutil.Process(info["Pid"]).cmdline())
        except psutil.NoSuchProcess:
            continue
        if "EmbedChunks" in title:
            pids.append(info["Pid"])
    return pids


def test_killed_embedding_actor_is_restarted_and_the_job_finishes(
    ray_cluster, reference, corpus_subset: Path, tmp_path: Path
) -> None:
    faulty = config(tmp_path / "faulty")
    killed: list[tuple[int, int]] = []  # (pid, chunks written when it was killed)
    lock = threading.Lock()

    def kill_once(done: int, total: int) -> None:
        with lock:
            if killed or done >= total:
                return
            pids = embedding_actor_pids()
            assert pids, "no embedding actor found to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append((pids[0], done))

    report = ingest_on_ray(faulty, corpus_subset, progress=kill_once)
    assert killed and 0 < killed[0][1] < report.chunks_written
    print(f"killed embedding actor pid {killed[0][0]} after {killed[0][1]}/{report.chunks_written} chunks")
    assert_same_collection(reference[1], rows(faulty))
    assert not report.files_failed


def test_killed_driver_is_completed_by_the_next_run(reference, corpus_subset: Path, tmp_path: Path) -> None:
    crash_home = tmp_path / "crash"
    env = {
        **os.environ,
        "RAGSERVE_HOME": str(crash_home),
        **{f"RAGSERVE__INGEST__RAY__{k.upper()}": str(v) for k, v in SMALL["ingest"]["ray"].items()},
        "RAGSERVE__STORE__WRITE_BATCH_SIZE": str(SMALL["store"]["write_batch_size"]),
    }
    cmd = [sys.executable, "-m", "ragserve.cli", "ingest", str(corpus_subset), "--ray"]
    proc = subprocess.Popen(
        [*cmd, "-v"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "wrote " in line and " chunks" in line:  # the first writer batch is in Milvus
            proc.send_signal(signal.SIGKILL)
            print(f"killed the driver at: {line.strip()}")
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    partial = rows_when_released(config(crash_home))
    total = len(reference[1])
    assert 0 < len(partial) < total

    done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rerun = json.loads(done.stdout)
    rewritten = rerun["chunks_new"] + rerun["chunks_updated"]
    print(f"partial {len(partial)}/{total} chunks, the rerun wrote {rewritten}")
    assert rerun["files_unchanged"] + rerun["files_written"] == rerun["files"]
    assert_same_collection(reference[1], rows(config(crash_home)))  # nothing missing, no duplicates
