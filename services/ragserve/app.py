"""``build_app(args) -> Application``: the one builder that `ragserve serve`, `serve run` and KubeRay's
``serveConfigV2`` (``import_path: ragserve.app:build_app``) use.

``args`` is an AppConfig as a dict (profile defaults and ``RAGSERVE__*`` environment variables of the
replica's process apply underneath it). The builder owns every deployment option: replicas and autoscaling
come from each section's ``deployment`` block, GPU placement from the generator's parallelism.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from ragserve.config import AppConfig, load_config

APP_NAME = "ragserve"
IMPORT_PATH = "ragserve.app:build_app"
DEPLOYMENT_NAMES = {
    "embedder": "Embedder",
    "generator": "Generator",
    "router": "Router",
    "lite": "MilvusLite",
}


def config_from_args(args: dict[str, Any] | None) -> AppConfig:
    args = dict(args or {})
    return load_config(profile=args.get("profile"), overrides=args)


def runtime_env(cfg: AppConfig) -> dict[str, Any]:
    """Environment every replica needs before it imports transformers / vLLM."""
    env = {
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.generator.cpu_kvcache_space_gib),
    }
    if cfg.hf_offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def deployment_options(cfg: AppConfig) -> dict[str, dict[str, Any]]:
    """Serve options per deployment, from config only (also emitted by `ragserve serve-config`)."""
    from ragserve.generator.deployment import placement

    def common(section: Any) -> dict[str, Any]:
        d = section.deployment
        return {
            "autoscaling_config": d.autoscaling_config(),
            "max_ongoing_requests": d.max_ongoing_requests,
            "max_queued_requests": d.max_queued_requests,
            "backpressure_config": {"status_code": 503, "retry_after_s": d.retry_after_s},
        }

    env = {"env_vars": runtime_env(cfg)}
    embedder = {
        **common(cfg.embedder),
        "ray_actor_options": {
            "num_cpus": cfg.embedder.deployment.num_cpus,
            "num_gpus": cfg.embedder.deployment.num_gpus,
            "runtime_env": env,
        },
    }
    generator = {**common(cfg.generator), **placement(cfg.generator)}
    generator["ray_actor_options"] = {**generator["ray_actor_options"], "runtime_env": env}
    router = {
        **common(cfg.router),
        "ray_actor_options": {"num_cpus": cfg.router.deployment.num_cpus, "runtime_env": env},
    }
    return {"embedder": embedder, "generator": generator, "router": router}


def _deployment(cls: type, key: str, options: dict[str, Any]) -> Deployment:
    return serve.deployment(name=DEPLOYMENT_NAMES[key], **options)(cls)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Entry point for `serve run` / serveConfigV2: validate ``args`` with the config model, then bind."""
    return build_app_from_config(config_from_args(args))


def build_app_from_config(cfg: AppConfig) -> Application:
    from ragserve.embedder.deployment import EmbedderDeployment
    from ragserve.generator.deployment import GeneratorDeployment
    from ragserve.router.deployment import RouterDeployment
    from ragserve.store.lite_server import MilvusLiteServerDeployment

    opts = deployment_options(cfg)
    embedder = _deployment(EmbedderDeployment, "embedder", opts["embedder"]).bind(cfg.embedder)
    generator = _deployment(GeneratorDeployment, "generator", opts["generator"]).bind(
        cfg.generator, str(cfg.cache_dir)
    )
    lite = None
    if cfg.store.is_lite:  # one owner of the file; the cluster path (a URI) needs no such deployment
        assert cfg.store.uri is not None
        lite_opts = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}}
        lite = _deployment(MilvusLiteServerDeployment, "lite", lite_opts).bind(
            os.path.expanduser(cfg.store.uri)
        )
    router = _deployment(RouterDeployment, "router", opts["router"])
    return router.bind(cfg, embedder, generator, lite)


def serve_config(cfg: AppConfig) -> dict[str, Any]:
    """The `applications:` document a RayService's serveConfigV2 (or `serve run FILE`) takes.

    Secrets are left out: the token reaches replicas as RAGSERVE__STORE__TOKEN from a Kubernetes Secret.
    """
    args = cfg.model_dump(mode="json", exclude={"store": {"token"}})
    opts = deployment_options(cfg)
    deployments = []
    for key in ("router", "embedder", "generator"):
        entry = {
            "name": DEPLOYMENT_NAMES[key],
            **{k: v for k, v in opts[key].items() if k != "ray_actor_options"},
        }
        deployments.append(entry)
    return {
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": cfg.router.route_prefix,
                "import_path": IMPORT_PATH,
                "args": args,
                "deployments": deployments,
            }
        ]
    }
