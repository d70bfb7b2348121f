"""Who owns which setting, in code: Serve options come verbatim from each `deployment` block and never
travel in `args`; the builder derives resources, placement and the replicas' environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragserve.app import (
    DEPLOYMENTS,
    actor_options,
    app_args,
    deployed_sections,
    serve_config,
    serve_options,
)
from ragserve.config import AppConfig, ConfigError, deep_merge, load_config, profile_defaults
from ragserve.config.defaults import model_defaults
from ragserve.environment import process_env


def test_serve_options_are_the_profile_block_over_the_models_defaults(tmp_path: Path) -> None:
    cfg = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    profile, defaults = profile_defaults("local"), model_defaults()
    for section in DEPLOYMENTS:
        block = deep_merge(defaults[section]["deployment"], profile[section]["deployment"])
        assert serve_options(cfg, section) == block
    # what the profile leaves out is the model's: Serve's whole autoscaling_config is sent, never a part
    assert serve_options(cfg, "router")["autoscaling_config"]["look_back_period_s"] == 30
    assert "look_back_period_s" not in profile["router"]["deployment"]["autoscaling_config"]


def test_args_carry_no_scaling_knob_and_no_secret(tmp_path: Path) -> None:
    cfg = load_config(
        env={"RAGSERVE_HOME": str(tmp_path), "RAGSERVE__STORE__TOKEN": "user:secret"},
        overrides={"generator": {"deployment": {"autoscaling_config": {"max_replicas": 3}}}},
    )
    args = app_args(cfg)
    assert not [s for s in DEPLOYMENTS if "deployment" in args[s]]
    assert "token" not in args["store"] and "secret" not in str(serve_config(cfg))
    (app,) = serve_config(cfg)["applications"]
    (generator,) = [d for d in app["deployments"] if d["name"] == "Generator"]
    assert generator["autoscaling_config"]["max_replicas"] == 3


def test_resources_are_honoured_for_every_deployment(tmp_path: Path) -> None:
    cfg = load_config(
        env={"RAGSERVE_HOME": str(tmp_path)},
        overrides={
            "router": {"resources": {"num_cpus": 2, "num_gpus": 0.5}},
            "embedder": {"resources": {"num_gpus": 1}},
            "generator": {"resources": {"num_cpus": 3}},
            "reranker": {"resources": {"num_cpus": 1.5, "num_gpus": 0.25}},
        },
    )
    router, embedder, generator, reranker = (actor_options(cfg, s)["ray_actor_options"] for s in DEPLOYMENTS)
    assert (router["num_cpus"], router["num_gpus"]) == (2, 0.5)
    assert embedder["num_gpus"] == 1
    assert (generator["num_cpus"], generator["num_gpus"]) == (3, 0)  # cpu device: no GPU
    assert (reranker["num_cpus"], reranker["num_gpus"]) == (1.5, 0.25)
    for opts in (router, embedder, generator, reranker):
        assert opts["runtime_env"] == {"env_vars": process_env(cfg)}


def test_serve_access_log_is_off_unless_asked_for(tmp_path: Path) -> None:
    off = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    on = load_config(
        env={"RAGSERVE_HOME": str(tmp_path)}, overrides={"observability": {"serve_access_log": True}}
    )
    for section in DEPLOYMENTS:
        assert actor_options(off, section)["logging_config"] == {"enable_access_log": False}
        assert actor_options(on, section)["logging_config"] == {"enable_access_log": True}


def test_the_reranker_is_deployed_only_when_enabled(tmp_path: Path) -> None:
    def names(cfg: AppConfig) -> list[str]:
        return [d["name"] for d in serve_config(cfg)["applications"][0]["deployments"]]

    off = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    assert deployed_sections(off) == ["router", "embedder", "generator"] and "Reranker" not in names(off)
    on = load_config(env={"RAGSERVE_HOME": str(tmp_path)}, overrides={"reranker": {"enabled": True}})
    assert names(on) == ["Router", "Embedder", "Generator", "Reranker"]
    assert "deployment" not in app_args(on)["reranker"] and app_args(on)["reranker"]["enabled"] is True
    with pytest.raises(ConfigError, match=r"reranker\.device"):
        load_config(env={}, overrides={"reranker": {"device": "tpu"}})


def test_generator_gpus_follow_parallelism_only(tmp_path: Path) -> None:
    cfg = load_config(
        env={"RAGSERVE_HOME": str(tmp_path)},
        overrides={"generator": {"device": "cuda", "tensor_parallel_size": 2}},
    )
    opts = actor_options(cfg, "generator")
    assert opts["placement_group_bundles"] == [{"CPU": 0.25, "GPU": 1}, {"GPU": 1}]
    assert opts["placement_group_strategy"] == "STRICT_PACK"
    with pytest.raises(ConfigError, match=r"generator\.resources\.num_gpus"):
        load_config(env={}, overrides={"generator": {"resources": {"num_gpus": 1}}})


def test_a_partial_block_merges_over_the_profile_and_a_flat_key_is_refused(tmp_path: Path) -> None:
    cfg = load_config(
        env={"RAGSERVE_HOME": str(tmp_path)},
        overrides={"router": {"deployment": {"autoscaling_config": {"max_replicas": 5}}}},
    )
    auto = cfg.router.deployment.autoscaling_config
    assert (auto.max_replicas, auto.min_replicas, auto.upscale_delay_s) == (5, 1, 5)  # the rest: profile
    with pytest.raises(ConfigError, match=r"router\.deployment\.max_replicas"):
        load_config(env={}, overrides={"router": {"deployment": {"max_replicas": 5}}})
    with pytest.raises(ConfigError, match=r"min_replicas \(3\) exceeds max_replicas \(2\)"):
        load_config(env={}, overrides={"router": {"deployment": {"autoscaling_config": {"min_replicas": 3}}}})


def test_ray_node_environment_comes_from_its_file_and_yields_to_the_user(tmp_path: Path) -> None:
    from ragserve import environment

    node_env = {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
    }
    assert environment.ray_node_env() == node_env
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "0", "PATH": "/bin"}  # exported by the user: kept
    with environment.ray_node_env_applied(env):  # what ray.init's processes inherit
        assert env == {**node_env, "RAY_SERVE_ENABLE_HA_PROXY": "0", "PATH": "/bin"}
    assert env == {"RAY_SERVE_ENABLE_HA_PROXY": "0", "PATH": "/bin"}  # the driver's own again


def test_process_environment_has_one_owner(tmp_path: Path) -> None:
    from ragserve import environment

    cfg = load_config(
        env={"RAGSERVE_HOME": str(tmp_path)}, overrides={"generator": {"cpu_kvcache_space_gib": 3}}
    )
    env = {"HF_HUB_OFFLINE": "0"}  # what the user exported wins
    environment.apply(cfg, env)
    assert env == {
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_KVCACHE_SPACE": "3",
    }
