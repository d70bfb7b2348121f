"""Loading: the profile file < the user's YAML < ``RAGSERVE__*`` variables < explicit overrides, validated
into an AppConfig with errors that name the field."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ragserve.config.base import ConfigError
from ragserve.config.profiles import profile_defaults
from ragserve.config.settings import AppConfig, default_data_dir

ENV_PREFIX = "RAGSERVE__"


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``RAGSERVE__STORE__URI=http://milvus:19530`` -> ``{"store": {"uri": "http://milvus:19530"}}``."""
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            node[path[-1]] = raw
    return out


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{field}: {e['msg']}{shown}")
    return "invalid configuration: " + "; ".join(lines)


def build_config(data: Mapping[str, Any]) -> AppConfig:
    """Validate a plain dict (already merged) into an AppConfig, with errors that name the field."""
    try:
        return AppConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_config(
    path: str | Path | None = None,
    *,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> AppConfig:
    """Profile defaults < YAML file < environment < explicit overrides (e.g. CLI flags)."""
    env = os.environ if env is None else env
    file_data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {p} is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        file_data = loaded or {}
    env_data = env_overrides(env)
    chosen = (
        profile
        or env.get("RAGSERVE_PROFILE")
        or env_data.get("profile")
        or file_data.get("profile")
        or "local"
    )
    data = profile_defaults(str(chosen))
    data.setdefault("data_dir", str(default_data_dir(env)))
    for layer in (file_data, env_data, overrides or {}):
        data = deep_merge(data, layer)
    data["profile"] = chosen
    return build_config(data)


def dump_config(cfg: AppConfig) -> dict[str, Any]:
    """JSON-safe dict of the config with secrets masked (for logs and ``ragserve config``)."""
    return cfg.model_dump(mode="json")
