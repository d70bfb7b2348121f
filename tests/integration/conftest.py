from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session: 8 logical CPUs (more than the machine has, or some deployments
    never schedule), fast autoscaling metrics so scaling is observable within a test, and metrics exported
    every second (not 10) so the Prometheus test sees its traffic quickly."""
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    import ray

    for attempt in range(3):  # Ray waits a fixed 30 s for its raylet; on a loaded 2-core box that can lapse
        try:
            ray.init(
                num_cpus=8,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _system_config={"metrics_report_interval_ms": 1000},
            )
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
