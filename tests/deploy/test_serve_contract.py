"""The contract between chart and code: the rendered serveConfigV2 is what Ray Serve accepts, its `args`
load into AppConfig, carry no scaling knob and build the application, and its `deployments` are the
production config's blocks (the chart merges the same profile file the builder loads over the model's
defaults, generated into app-defaults.yaml)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from ragserve.app import (
    DEPLOYMENTS,
    IMPORT_PATH,
    build_app,
    config_from_args,
    serve_config,
    serve_options,
    serve_tracing_config,
)
from ragserve.environment import ray_node_env, tracing_env
from tests.deploy.conftest import OVERLAYS, SCENARIOS, load_script, one, serve_app, worker_group


@pytest.fixture(autouse=True)
def _no_ragserve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the rendered args count: no RAGSERVE_* of the machine running the tests."""
    import os

    for key in list(os.environ):
        if key.startswith("RAGSERVE"):
            monkeypatch.delenv(key)


def _deployments(app: Any) -> dict[str, Any]:
    """Name -> bound Deployment of the Router and the deployments it is bound to."""
    router = app._bound_deployment
    out = {router.name: router}
    for arg in router.init_args:
        if hasattr(arg, "_bound_deployment"):
            out[arg._bound_deployment.name] = arg._bound_deployment
    return out


def _all_rendered(rendered: dict[str, Any], built_overlays: dict[str, Any]) -> dict[str, Any]:
    return {**rendered, **{f"overlay/{k}": v for k, v in built_overlays.items()}}


@pytest.mark.parametrize("scenario", [*sorted(SCENARIOS), *(f"overlay/{o}" for o in OVERLAYS)])
def test_serve_config_loads_into_the_model_and_builds(
    rendered: dict[str, Any], built_overlays: dict[str, Any], scenario: str
) -> None:
    docs = _all_rendered(rendered, built_overlays)[scenario]
    config = yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)  # what the Ray dashboard checks when KubeRay submits it
    app = serve_app(docs)
    assert app["import_path"] == IMPORT_PATH
    cfg = config_from_args(app["args"])
    assert cfg.store.token is None and not cfg.store.is_lite
    assert app["route_prefix"] == cfg.router.route_prefix
    # Serve hashes args into the app's code version: a scaling knob there would restart every replica.
    assert not [s for s in DEPLOYMENTS if "deployment" in app["args"].get(s, {})]
    # The chart merges values over the same profile file the builder loads. Serve will apply these blocks
    # over the builder's: each must be complete and valid for the model (ServeOptions has no defaults).
    blocks = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app["deployments"]}
    served = config_from_args(
        {
            **app["args"],
            **{
                s: {**app["args"].get(s, {}), "deployment": blocks[n]}
                for s, n in DEPLOYMENTS.items()
                if n in blocks
            },
        }
    )
    (expected,) = serve_config(served)["applications"]
    assert app["deployments"] == expected["deployments"]
    # the chart lists exactly the deployments the builder binds (the Reranker only when enabled)
    assert set(_deployments(build_app(app["args"]))) == set(blocks)
    assert ("Reranker" in blocks) == cfg.reranker.enabled == (scenario == "reranker")
    # Serve's tracing (proxies and replicas) exactly as the builder's serve_config writes it, and the OTLP
    # endpoint in every Ray container's environment, so the proxies export too
    assert config.get("tracing_config") == serve_tracing_config(cfg)
    assert (config.get("tracing_config") is not None) == (scenario == "tracing")
    head = one(docs, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    assert {k: env[k] for k in tracing_env(cfg)} == tracing_env(cfg)
    assert ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in env) == cfg.observability.tracing.enabled
    # what Ray's own processes read at start (Serve's ingress and transport): in every Ray container, from the
    # file `ragserve serve` and the tests read
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    assert len(pods) >= 2
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert {k: env.get(k) for k in ray_node_env()} == ray_node_env()


def test_default_blocks_are_the_production_config(rendered: dict[str, Any]) -> None:
    """No defaults of the chart's own: each deployment's entry is the production config's block (the profile
    over the model's defaults), name added."""
    cfg = config_from_args({"profile": "production", "store": {"uri": "http://milvus:19530"}})
    by_name = {d.pop("name"): d for d in serve_app(rendered["default"])["deployments"]}
    assert not cfg.reranker.enabled  # optional: not deployed by default
    assert by_name == {name: serve_options(cfg, s) for s, name in DEPLOYMENTS.items() if s != "reranker"}
    # distinct values in the profile, so a mix-up between deployments would show
    assert len({str(d) for d in by_name.values()}) == 3


def test_the_chart_reads_the_models_defaults_and_sets_none_of_its_own(rendered: dict[str, Any]) -> None:
    """app-defaults.yaml is the model's defaults as generated now, and `values.app` states only what the
    model and the profile cannot know: the profile, the pods' state directory, Milvus' address."""
    assert load_script("gen_app_defaults").main(["--check"]) == 0
    assert set(serve_app(rendered["default"])["args"]) == {"profile", "data_dir", "store"}
    assert serve_app(rendered["default"])["args"]["store"].keys() == {"uri"}


def test_a_scaling_change_touches_only_its_deployment_entry(helm_template: Any) -> None:
    from tests.deploy.conftest import docs_of

    base = serve_app(docs_of(helm_template().stdout))
    changed = serve_app(
        docs_of(
            helm_template(
                "--set",
                "app.embedder.deployment.autoscaling_config.max_replicas=7",
                "--set",
                "app.embedder.deployment.autoscaling_config.initial_replicas=3",
            ).stdout
        )
    )
    assert changed["args"] == base["args"]  # same code version: Serve updates in place
    before = {d["name"]: d for d in base["deployments"]}
    after = {d["name"]: d for d in changed["deployments"]}
    assert after["Embedder"]["autoscaling_config"] == {
        **before["Embedder"]["autoscaling_config"],
        "max_replicas": 7,
        "initial_replicas": 3,
    }  # the rest of the block stays the profile's (Serve replaces a whole autoscaling_config)
    assert after["Router"] == before["Router"] and after["Generator"] == before["Generator"]


@pytest.mark.parametrize(("scenario", "gpus"), [("default", 1), ("gpu-tp2", 2)])
def test_generator_placement_fits_one_gpu_pod(rendered: dict[str, Any], scenario: str, gpus: int) -> None:
    docs = rendered[scenario]
    app = serve_app(docs)
    group = worker_group(docs, "gpu")
    assert group is not None
    pod_gpus = group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    generator = _deployments(build_app(app["args"]))["Generator"]
    rc = generator._replica_config
    if gpus == 1:
        assert rc.placement_group_bundles is None
        assert generator.ray_actor_options["num_gpus"] == pod_gpus == 1
        return
    bundles = rc.placement_group_bundles
    assert sum(b.get("GPU", 0) for b in bundles) == pod_gpus == gpus
    assert rc.placement_group_strategy == "STRICT_PACK"  # all bundles on one node = one pod
    assert sum(b.get("CPU", 0) for b in bundles) <= float(group["rayStartParams"]["num-cpus"])


def test_minimal_cpu_runs_the_generator_on_cpu_workers(rendered: dict[str, Any]) -> None:
    docs = rendered["minimal-cpu"]
    cfg = config_from_args(serve_app(docs)["args"])
    assert cfg.generator.device == "cpu" and cfg.generator.gpus_per_replica == 0
    assert one(docs, "RayService")["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is False


def test_pipeline_parallelism_multiplies_gpus_and_relaxes_packing(helm_template: Any) -> None:
    from tests.deploy.conftest import CHART, docs_of

    docs = docs_of(
        helm_template(
            "-f", str(CHART / "ci" / "gpu-tp2-values.yaml"), "--set", "app.generator.pipeline_parallel_size=2"
        ).stdout
    )
    group = worker_group(docs, "gpu")
    assert group is not None
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    rc = _deployments(build_app(serve_app(docs)["args"]))["Generator"]._replica_config
    assert rc.placement_group_strategy == "PACK" and len(rc.placement_group_bundles) == 4
