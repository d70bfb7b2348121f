"""The contract between chart and code: the rendered serveConfigV2 is what Ray Serve accepts, its `args`
load into AppConfig and build the application, and its `deployments` equal what the code emits."""

from __future__ import annotations

from typing import Any

import pytest
from ray.serve.schema import ServeDeploySchema

from ragserve.app import IMPORT_PATH, build_app, config_from_args, serve_config
from tests.deploy.conftest import OVERLAYS, SCENARIOS, one, serve_app, worker_group


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
    config = {"applications": [serve_app(docs)]}
    ServeDeploySchema.model_validate(config)  # what the Ray dashboard checks when KubeRay submits it
    app = serve_app(docs)
    assert app["import_path"] == IMPORT_PATH
    cfg = config_from_args(app["args"])
    assert cfg.store.token is None and not cfg.store.is_lite
    assert app["route_prefix"] == cfg.router.route_prefix
    # The chart renders each deployment's options itself: they must equal the code's (no drift).
    (expected,) = serve_config(cfg)["applications"]
    assert app["deployments"] == expected["deployments"]
    assert set(_deployments(build_app(app["args"]))) == {"Router", "Embedder", "Generator"}


def test_each_deployment_carries_its_own_autoscaling(rendered: dict[str, Any]) -> None:
    app = serve_app(rendered["default"])
    by_name = {d["name"]: d for d in app["deployments"]}
    assert set(by_name) == {"Router", "Embedder", "Generator"}
    for name, key in (("Router", "router"), ("Embedder", "embedder"), ("Generator", "generator")):
        block = app["args"][key]["deployment"]
        auto = by_name[name]["autoscaling_config"]
        assert (auto["min_replicas"], auto["max_replicas"]) == (block["min_replicas"], block["max_replicas"])
        assert auto["target_ongoing_requests"] == block["target_ongoing_requests"]
        assert by_name[name]["max_queued_requests"] == block["max_queued_requests"]
    # distinct values in the defaults, so a mix-up between deployments would show
    assert (
        len(
            {
                (
                    d["autoscaling_config"]["min_replicas"],
                    d["autoscaling_config"]["max_replicas"],
                    d["max_queued_requests"],
                )
                for d in by_name.values()
            }
        )
        == 3
    )


def test_chart_follows_a_changed_autoscaling_value(helm_template: Any) -> None:
    from tests.deploy.conftest import docs_of

    docs = docs_of(
        helm_template(
            "--set",
            "app.embedder.deployment.max_replicas=7",
            "--set",
            "app.embedder.deployment.initial_replicas=3",
        ).stdout
    )
    (embedder,) = [d for d in serve_app(docs)["deployments"] if d["name"] == "Embedder"]
    assert embedder["autoscaling_config"]["max_replicas"] == 7
    assert embedder["autoscaling_config"]["initial_replicas"] == 3


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
    app = serve_app(docs)
    (expected,) = serve_config(config_from_args(app["args"]))["applications"]
    assert app["deployments"] == expected["deployments"]
    (gen,) = [d for d in app["deployments"] if d["name"] == "Generator"]
    assert gen["placement_group_strategy"] == "PACK" and len(gen["placement_group_bundles"]) == 4
