"""Exit codes of ``ragserve``: an unexpected crash is told apart from "some files skipped" (1)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ragserve import cli
from ragserve.cli import commands, dispatch
from ragserve.observability.logging import Console


def crash(*_: Any) -> int:
    raise RuntimeError("a bug, not bad input")


@pytest.mark.parametrize("diverted", [False, True], ids=["logs-on-terminal", "logs-in-file"])
def test_an_unexpected_crash_exits_70_not_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], diverted: bool
) -> None:
    log = tmp_path / "stats.log" if diverted else None
    monkeypatch.setenv("RAGSERVE_HOME", str(tmp_path))
    # No descriptor diversion inside pytest: the Console writes to the captured streams.
    monkeypatch.setattr(
        dispatch, "prepare_environment", lambda cfg, args: Console(sys.stdout, sys.stderr, log)
    )
    monkeypatch.setattr(commands, "cmd_stats", crash)
    code = cli.main(["stats"])
    assert code == 70  # EX_SOFTWARE (sysexits.h)
    assert code not in (cli.EXIT_OK, cli.EXIT_PARTIAL, cli.EXIT_USAGE, cli.EXIT_DEPENDENCY, 130)
    assert "RuntimeError: a bug, not bad input" in capsys.readouterr().err


def test_a_usage_error_still_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def bad_input(*_: Any) -> int:
        raise ValueError("top_k: must be positive")

    monkeypatch.setenv("RAGSERVE_HOME", str(tmp_path))
    monkeypatch.setattr(
        dispatch, "prepare_environment", lambda cfg, args: Console(sys.stdout, sys.stderr, None)
    )
    monkeypatch.setattr(commands, "cmd_stats", bad_input)
    assert cli.main(["stats"]) == cli.EXIT_USAGE


def test_a_store_error_is_a_dependency_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by class without importing the store module first (``--url`` never imports pymilvus)."""
    from ragserve.store.connection import StoreError

    def milvus_down(*_: Any) -> int:
        raise StoreError("cannot open /x/milvus.db: locked")

    monkeypatch.setenv("RAGSERVE_HOME", str(tmp_path))
    monkeypatch.setattr(
        dispatch, "prepare_environment", lambda cfg, args: Console(sys.stdout, sys.stderr, None)
    )
    monkeypatch.setattr(commands, "cmd_stats", milvus_down)
    assert cli.main(["stats"]) == cli.EXIT_DEPENDENCY
    assert "error: Milvus: cannot open /x/milvus.db: locked" in capsys.readouterr().err
