from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import AppConfig, load_config

pytestmark = pytest.mark.integration


@pytest.fixture()
def app_config(tmp_path: Path) -> AppConfig:
    """Local profile with a private Milvus Lite file."""
    return load_config(env={"RAGSERVE_HOME": str(tmp_path / "home")})


@pytest.fixture(scope="session")
def encoder():
    """The real bundled all-MiniLM-L6-v2, loaded once."""
    from ragserve.embedder.encoder import Encoder

    return Encoder(load_config(env={}).embedder)


@pytest.fixture()
def store(app_config: AppConfig) -> Iterator:
    from ragserve.store.milvus import MilvusStore

    s = MilvusStore(app_config.store)
    yield s
    s.close()
