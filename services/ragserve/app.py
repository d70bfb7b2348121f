"""``build_app(args) -> Application``: the one builder that `ragserve serve`, `serve run` and KubeRay's
``serveConfigV2`` (``import_path: ragserve.app:build_app``) use.

Who owns what (docs/kubernetes.md, "Who owns which setting"):
- ``args`` is an AppConfig as a dict (profile defaults and ``RAGSERVE__*`` variables of the replica's process
  apply underneath it). Serve hashes ``args`` into the application's code version, so any change to them
  rebuilds the app and restarts every replica: they carry what needs a restart anyway (models, engine
  arguments, resources) and never a scaling knob.
- Each section's ``deployment`` block (``ServeOptions``: autoscaling, admission, backpressure, under Serve's
  own names) is what Serve updates in place. ``serve_config()`` puts it in the ``deployments:`` list, never in
  ``args``; the builder passes the same block to ``serve.deployment()`` so that ``serve.run(build_app(...))``
  without a config file behaves the same.
- The builder derives what follows from the config and is not a knob: resources and placement groups
  (GPUs from tensor x pipeline parallelism), the replicas' process environment.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve import Application

from ragserve.config import AppConfig, load_config
from ragserve.environment import process_env

APP_NAME = "ragserve"
IMPORT_PATH = "ragserve.app:build_app"
# AppConfig section -> Serve deployment name (the names dashboards and alerts select on).
DEPLOYMENTS = {"router": "Router", "embedder": "Embedder", "generator": "Generator", "reranker": "Reranker"}
OPTIONAL = {"reranker"}  # deployed when the section's `enabled` is true
LITE_DEPLOYMENT = "MilvusLite"


def config_from_args(args: dict[str, Any] | None) -> AppConfig:
    args = dict(args or {})
    return load_config(profile=args.get("profile"), overrides=args)


def deployed_sections(cfg: AppConfig) -> list[str]:
    """The sections that run as deployments in this config (optional ones only when enabled)."""
    return [s for s in DEPLOYMENTS if s not in OPTIONAL or getattr(cfg, s).enabled]


def serve_options(cfg: AppConfig, section: str) -> dict[str, Any]:
    """The in-place-updatable Serve options of one deployment: its ``deployment`` block, verbatim."""
    return getattr(cfg, section).deployment.model_dump(mode="json")


def replica_logging(cfg: AppConfig) -> dict[str, Any]:
    """Serve's ``logging_config`` of every replica."""
    return {"enable_access_log": cfg.observability.serve_access_log}


def actor_options(cfg: AppConfig, section: str) -> dict[str, Any]:
    """What the builder derives: resources, placement, the replica's environment and logging."""
    from ragserve.generator.deployment import placement

    runtime_env = {"env_vars": process_env(cfg)}
    if section == "generator":
        opts = placement(cfg.generator)
    else:
        res = getattr(cfg, section).resources
        opts = {"ray_actor_options": {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}}
    opts["ray_actor_options"] = {**opts["ray_actor_options"], "runtime_env": runtime_env}
    opts["logging_config"] = replica_logging(cfg)
    return opts


def _deployment(cls: type, cfg: AppConfig, section: str) -> Any:
    options = {**serve_options(cfg, section), **actor_options(cfg, section)}
    return serve.deployment(name=DEPLOYMENTS[section], **options)(cls)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Entry point for `serve run` / serveConfigV2: validate ``args`` with the config model, then bind."""
    return build_app_from_config(config_from_args(args))


def build_app_from_config(cfg: AppConfig) -> Application:
    from ragserve.embedder.deployment import EmbedderDeployment
    from ragserve.generator.deployment import GeneratorDeployment
    from ragserve.reranker.deployment import RerankerDeployment
    from ragserve.router.deployment import RouterDeployment
    from ragserve.store.lite_server import LiteOwner

    embedder = _deployment(EmbedderDeployment, cfg, "embedder").bind(cfg.embedder)
    generator = _deployment(GeneratorDeployment, cfg, "generator").bind(cfg.generator, str(cfg.cache_dir))
    lite = None
    if cfg.store.is_lite:  # one owner of the file; the cluster path (a URI) needs no such deployment
        assert cfg.store.uri is not None
        lite = serve.deployment(
            name=LITE_DEPLOYMENT,
            num_replicas=1,
            ray_actor_options={"num_cpus": cfg.store.lite_num_cpus},
            logging_config=replica_logging(cfg),
        )(LiteOwner).bind(os.path.expanduser(cfg.store.uri))
    reranker = None
    if cfg.reranker.enabled:
        reranker = _deployment(RerankerDeployment, cfg, "reranker").bind(cfg.reranker, str(cfg.cache_dir))
    return _deployment(RouterDeployment, cfg, "router").bind(cfg, embedder, generator, lite, reranker)


def app_args(cfg: AppConfig) -> dict[str, Any]:
    """``args`` of the Serve application: the config without deployment blocks and without secrets (the
    token reaches replicas as RAGSERVE__STORE__TOKEN from a Kubernetes Secret)."""
    exclude: dict[str, Any] = {section: {"deployment"} for section in DEPLOYMENTS}
    exclude["store"] = {"token"}
    return cfg.model_dump(mode="json", exclude=exclude)


def serve_tracing_config(cfg: AppConfig) -> dict[str, Any] | None:
    """Serve's own tracing (proxy and replica spans, context across handles), exporting through ragserve's
    OTLP span processors; None when observability.tracing is off."""
    from ragserve.observability.tracing import EXPORTER_IMPORT_PATH

    t = cfg.observability.tracing
    if not t.enabled:
        return None
    return {"enabled": True, "exporter_import_path": EXPORTER_IMPORT_PATH, "sampling_ratio": t.sampling_ratio}


def serve_config(cfg: AppConfig) -> dict[str, Any]:
    """The `applications:` document a RayService's serveConfigV2 (or `serve deploy FILE`) takes."""
    tracing = serve_tracing_config(cfg)
    return {
        **({"tracing_config": tracing} if tracing else {}),
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": cfg.router.route_prefix,
                "import_path": IMPORT_PATH,
                "args": app_args(cfg),
                "deployments": [
                    {"name": DEPLOYMENTS[section], **serve_options(cfg, section)}
                    for section in deployed_sections(cfg)
                ],
            }
        ],
    }
