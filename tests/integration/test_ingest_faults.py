"""Crash-safe and concurrent ingestion with real processes: SIGKILL midway, then re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def ingest_cmd(home: Path, docs: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "RAGSERVE_HOME": str(home), "RAGSERVE__INGEST__WRITE_GROUP_CHUNKS": "24"}
    return [sys.executable, "-m", "ragserve.cli", "ingest", str(docs), *extra], env


def stored(home: Path) -> dict[str, str]:
    """chunk id -> source of every stored chunk."""
    from ragserve.config import load_config
    from ragserve.store.milvus import MilvusStore

    store = MilvusStore(load_config(env={"RAGSERVE_HOME": str(home)}).store)
    try:
        store.load()
        return {row["id"]: row["source"] for row in store._iterate(["id", "source"])}
    finally:
        store.close()


def stored_ids(home: Path) -> set[str]:
    return set(stored(home))


def test_killed_ingest_is_completed_by_the_next_run(corpus_subset: Path, tmp_path: Path) -> None:
    clean_home, crash_home = tmp_path / "clean", tmp_path / "crash"
    cmd, env = ingest_cmd(clean_home, corpus_subset, "--json")
    clean = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)

    cmd, env = ingest_cmd(crash_home, corpus_subset, "-v")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    groups = 0
    assert proc.stderr is not None
    for line in proc.stderr:
        if "wrote " in line and " chunks" in line:
            groups += 1
            if groups == 3:  # some groups written, most not
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    partial = stored(crash_home)
    assert 0 < len(partial) < clean["chunks_new"]
    # What the re-run must write: every chunk of each file not completely stored (a file cut off midway is
    # rewritten whole, its stored chunks included), and nothing of the files the killed run finished.
    everything = stored(clean_home)
    complete = {
        source
        for source in set(partial.values())
        if sum(s == source for s in partial.values()) == sum(s == source for s in everything.values())
    }
    expected = sum(source not in complete for source in everything.values())

    cmd, env = ingest_cmd(crash_home, corpus_subset, "--json")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rerun = json.loads(done.stdout)
    assert rerun["chunks_new"] + rerun["chunks_updated"] == expected
    assert rerun["files_unchanged"] == len(complete)
    assert stored_ids(crash_home) == stored_ids(
        clean_home
    )  # same ids, same count: nothing lost, no duplicates


def test_concurrent_ingest_is_refused_not_corrupting(corpus_subset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cmd, env = ingest_cmd(home, corpus_subset, "-v")
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert first.stderr is not None
    for line in first.stderr:  # wait until the first process holds the store
        if "wrote " in line:
            break
    second = subprocess.run(
        ingest_cmd(home, corpus_subset)[0], env=env, capture_output=True, text=True, timeout=120
    )
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert second.returncode == 3 and "in use by another process" in second.stderr  # a clear refusal
    clean_home = tmp_path / "clean"
    cmd, env = ingest_cmd(clean_home, corpus_subset)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert stored_ids(home) == stored_ids(clean_home)
