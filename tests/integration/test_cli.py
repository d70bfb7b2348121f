"""The `ragserve` command as a user runs it: a subprocess with its own RAGSERVE_HOME."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ragserve_testkit import EVAL

pytestmark = pytest.mark.slow


def ragserve(
    home: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGSERVE_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def log_line(log: Path) -> str:
    return f"engine and library logs: {log} (-v shows them here)"


@pytest.mark.vllm
def test_ingest_search_eval_query(corpus_subset: Path, tmp_path: Path) -> None:
    """Each command prints only its own output. Without -v, library warnings and engine logs (vLLM's
    EngineCore subprocess, Triton, torch's C++ NUMA warning) go to <data_dir>/logs/<command>.log, named
    once on stderr; with -v they reach the terminal."""
    home = tmp_path / "home"
    first = ragserve(home, "ingest", str(corpus_subset))
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [log_line(home / "logs" / "ingest.log")]
    match = re.search(
        r"ingested (\d+) files .* chunks (\d+) new, 0 updated, 0 deleted in [\d.]+ s \(([\d.]+) chunks/s\)",
        first.stdout,
    )
    assert match and int(match.group(2)) > 50 and float(match.group(3)) > 0

    again = ragserve(home, "ingest", str(corpus_subset), "--json")
    report = json.loads(again.stdout)
    assert report["chunks_new"] == report["chunks_updated"] == report["chunks_deleted"] == 0

    found = ragserve(home, "search", "What do the parameters for HNSW mean?", "--top-k", "3", "--json")
    hits = json.loads(found.stdout)["hits"]
    assert len(hits) == 3 and "reference/index.md" in [h["source"] for h in hits]

    evaluated = ragserve(home, "eval", str(EVAL), "--k", "5", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    data = json.loads(evaluated.stdout)
    assert {"k", "n", "recall_at_k", "mrr"} <= set(data) and data["k"] == 5
    assert data["n"] + len(data["no_gold_sources"]) == sum(
        1 for line in EVAL.read_text().splitlines() if line.strip()
    )
    assert 0 < data["recall_at_k"] <= 1 and 0 < data["mrr"] <= 1  # the subset holds some gold pages

    question = "What do the parameters for HNSW mean?"
    answered = ragserve(home, "query", question, "--top-k", "3", "--json")
    assert answered.returncode == 0 and answered.stdout, answered.stderr[-3000:]
    log = home / "logs" / "query.log"
    assert answered.stderr.splitlines() == [log_line(log)]  # nothing else on the terminal
    result = json.loads(answered.stdout)  # stdout is the JSON alone
    assert result["answer"] and "reference/index.md" in [s["source"] for s in result["sources"]]
    assert result["usage"]["completion_tokens"] > 0 and result["timings"]["ttft_ms"] > 0
    engine_log = log.read_text()
    assert "EngineCore" in engine_log and "Triton" in engine_log and "WARNING" in engine_log

    verbose = ragserve(home, "query", question, "--top-k", "3", "--max-tokens", "4", "--json", "-v")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "EngineCore" in verbose.stderr and "Triton" in verbose.stderr
    assert "engine and library logs" not in verbose.stderr
    quiet = json.loads(verbose.stdout)
    assert 0 < quiet["usage"]["completion_tokens"] <= 4 and quiet["sources"] == result["sources"]


def test_bad_input_gives_clear_errors_and_keeps_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nMilvus keeps vectors.\n")
    assert ragserve(home, "ingest", str(docs)).returncode == 0

    empty = tmp_path / "empty"
    empty.mkdir()
    res = ragserve(home, "ingest", str(empty))
    assert res.returncode == 2 and "no supported files" in res.stderr

    res = ragserve(home, "ingest", str(tmp_path / "missing"))
    assert res.returncode == 2 and "does not exist" in res.stderr

    (docs / "blob.txt").write_bytes(b"\x7fELF\x00\x00\x01" * 50)
    (docs / "legacy.txt").write_bytes("Gr\xfc\xdfe".encode("latin-1"))
    res = ragserve(home, "ingest", str(docs))
    assert res.returncode == 1
    assert "blob.txt: binary file" in res.stderr and "legacy.txt: not valid UTF-8" in res.stderr

    res = ragserve(home, "query", "   ")
    assert res.returncode == 2 and "question: must not be empty" in res.stderr
    res = ragserve(home, "search", "x", "--top-k", "0")
    assert res.returncode == 2 and "--top-k" in res.stderr

    stats = json.loads(ragserve(home, "stats").stdout)
    assert stats["documents"] == 1 and stats["chunks"] == 1  # nothing lost

    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("store:\n  metric: L2\n")
    res = ragserve(home, "stats", "--config", str(bad_cfg))
    assert res.returncode == 2 and "store.metric" in res.stderr

    res = ragserve(home, "search", "anything", "--collection", "never_ingested")
    assert res.returncode == 2 and "run `ragserve ingest PATH` first" in res.stderr

    # A model that cannot be loaded is a failed dependency (3), named, not a traceback with 1.
    missing_model = {"RAGSERVE__EMBEDDER__MODEL": str(tmp_path / "no-such-model")}
    res = ragserve(home, "ingest", str(docs), env=missing_model)
    assert res.returncode == 3, res.stderr
    assert "embedder model" in res.stderr and "cannot be loaded" in res.stderr
    assert "Traceback" not in res.stderr
