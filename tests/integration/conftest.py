from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ragserve_testkit as testkit
from ragserve.config import AppConfig, load_config
from tests.integration import serving
from tests.integration.otlp_receiver import OtlpReceiver


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module saying ``STORES = ("lite", "server")`` runs each of its tests that uses app_config on each."""
    stores = getattr(metafunc.module, "STORES", None)
    if stores and "app_config" in metafunc.fixturenames:
        metafunc.parametrize("app_config", stores, indirect=True)


@pytest.fixture()
def app_config(request: pytest.FixtureRequest, tmp_path: Path) -> AppConfig:
    """The local profile on a private Milvus Lite file, or (param "server") on the session's Milvus server
    with a collection of its own."""
    env = {"RAGSERVE_HOME": str(tmp_path / "home")}
    if getattr(request, "param", "lite") == "lite":
        return load_config(env=env)
    uri = request.getfixturevalue("milvus_server")
    return load_config(overrides={"store": {"uri": uri, "collection": f"t_{tmp_path.name}"}}, env=env)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per module: vLLM's AsyncLLM binds its output handler to the loop it first runs on."""
    loop = asyncio.new_event_loop()
    yield loop
    pending = asyncio.all_tasks(loop)  # the engine's output handler, cancelled by shutdown()
    for task in pending:
        task.cancel()
    if pending:  # gather() of nothing would make its future on another loop
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


@pytest.fixture(scope="session")
def encoder():
    """The real bundled all-MiniLM-L6-v2, loaded once."""
    from ragserve.embedder.encoder import Encoder

    return Encoder(load_config(env={}).embedder)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real standalone Milvus 2.3 server on 127.0.0.1 for the session (ragserve_testkit.milvus_server): its
    URI. Skipped where the `milvus` package is not installed; a server that does not start fails."""
    try:
        with testkit.milvus_server(tmp_path_factory.mktemp("milvus-server")) as uri:
            yield uri
    except testkit.MilvusServerUnavailable as err:
        if not err.installed:
            pytest.skip(str(err))
        pytest.fail(str(err))


@pytest.fixture()
def store(app_config: AppConfig) -> Iterator:
    from ragserve.store.milvus import MilvusStore

    s = MilvusStore(app_config.store)
    yield s
    s.close()


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """The session's trace receiver. The endpoint and Serve's tracing settings are in the environment
    before Ray starts, so the HTTP proxy (which inherits it) exports there too, as the chart's pod env
    makes it."""
    from ragserve.environment import tracing_env

    receiver = OtlpReceiver()
    traced = {"observability": {"tracing": {"enabled": True, "endpoint": receiver.endpoint}}}
    os.environ.update(tracing_env(load_config(env={}, overrides=traced)))  # as the chart's pod env
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def ray_cluster(otlp: OtlpReceiver):
    """One local Ray for the whole session: 8 logical CPUs (more than the machine has, or some deployments
    never schedule), fast autoscaling metrics so scaling is observable within a test, and metrics exported
    every second (not 10) so the Prometheus test sees its traffic quickly."""
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    import ray

    from ragserve.environment import start_local_ray

    start_local_ray(  # as `ragserve serve` starts it: ray-node-env.yaml applied, retried on a loaded box
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _system_config={"metrics_report_interval_ms": 1000},
    )
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def served(
    ray_cluster, otlp: OtlpReceiver, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[serving.Served]:
    """The one Serve app of the session (vLLM starts once for every test that uses it)."""
    from ray import serve

    from ragserve.app import serve_config
    from ragserve.router.guard import digest
    from ragserve.store.lite_server import LiteServer
    from tests.integration.tcp_proxy import TcpProxy

    home = tmp_path_factory.mktemp("serve-home")
    milvus = LiteServer(str(home / "milvus.db"))
    proxy = TcpProxy(milvus.port).start()
    docs = tmp_path_factory.mktemp("serve-docs")
    for rel in serving.PAGES:
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_bytes((corpus_dir / rel).read_bytes())
    env = {**os.environ, "RAGSERVE_HOME": str(home), "RAGSERVE__STORE__URI": proxy.uri}
    subprocess.run(
        [sys.executable, "-m", "ragserve.cli", "ingest", str(docs)], env=env, check=True, timeout=300
    )

    # Fast autoscaling so scaling is observable within a test; the embedder pool starts at one replica.
    fast = {"upscale_delay_s": 0, "look_back_period_s": 2, "downscale_delay_s": 600}
    one = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1, **fast}}
    overrides = {
        "data_dir": str(home),
        "store": {"uri": proxy.uri, "timeout_s": serving.MILVUS_TIMEOUT_S},
        "embedder": {
            "max_batch_size": 8,
            "deployment": {
                "autoscaling_config": {
                    "min_replicas": 1,
                    "max_replicas": 2,
                    "target_ongoing_requests": 1,
                    **fast,
                }
            },
        },
        # The session's generator (tests/conftest.py): the random tiny Llama, as these tests need the engine
        # path, not language; `make ui-screenshot` names SmolLM2 instead for the docs' screenshot.
        "generator": {"model": serving.GENERATOR, **serving.SAMPLING, "deployment": one},
        # The generated random cross-encoder: the reranking code path on every query (its order is
        # arbitrary, so tests that check which page is found ask for `rerank: false`).
        "reranker": {"enabled": True, "timeout_s": serving.RERANKER_TIMEOUT_S, "deployment": one},
        "observability": {"tracing": {"enabled": True, "endpoint": otlp.endpoint, "sampling_ratio": 1.0}},
        "router": {
            "deployment": one,
            "request_timeout_s": 30,
            "first_token_timeout_s": 10,
            "auth": {"key_sha256": [digest(serving.API_KEY)], "required": True},
            "max_body_bytes": 65536,
        },
    }
    cfg = load_config(overrides=overrides, env={"RAGSERVE_HOME": str(home)})
    document = serve_config(cfg)
    serve.start(
        http_options={"host": "127.0.0.1", "port": serving.PORT}, tracing_config=document["tracing_config"]
    )
    serving.deploy(document)
    yield serving.Served(cfg, document, home, proxy)
    serve.delete(serving.APP)
    proxy.cut()
    milvus.stop()
