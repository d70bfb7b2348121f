"""The model's defaults as one tree: what a profile is merged over. The Helm chart, which cannot run Python,
reads the same tree from its generated ``app-defaults.yaml`` (deploy/scripts/gen_app_defaults.py)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ragserve.config.settings import AppConfig


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section model of a field that always holds one (``X``, not ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def model_defaults(model: type[BaseModel] = AppConfig) -> dict[str, Any]:
    """Every field's default, sections recursed into; fields without one (each profile states them) and
    defaults computed per machine (``data_dir``) are left out."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        section = _section(field.annotation)
        if section is not None:
            out[name] = model_defaults(section)
        elif field.default is not PydanticUndefined:
            out[name] = field.default
        elif field.default_factory is not None and name != "data_dir":
            out[name] = typing.cast(Any, field.default_factory)()
    return out
