"""The profiles: one YAML file per target in ``ragserve/profiles/``, each stating only what differs from the
model's defaults (and every field the model leaves without one). The folder is the one list of profiles."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from ragserve.config.base import ConfigError

_FOLDER = resources.files("ragserve").joinpath("profiles")
PROFILES = tuple(sorted(p.name.removesuffix(".yaml") for p in _FOLDER.iterdir() if p.name.endswith(".yaml")))


def profile_defaults(profile: str) -> dict[str, Any]:
    """The profile file as a dict, ``profile`` set: what load_config merges over the model's defaults."""
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    data = yaml.safe_load(_FOLDER.joinpath(f"{profile}.yaml").read_text(encoding="utf-8")) or {}
    data["profile"] = profile
    return data
