"""The Milvus Lite owner's cleanup, without starting Ray or Milvus."""

from __future__ import annotations

import gc
import sys
from typing import Any


def test_the_ray_actor_class_of_the_owner_is_collected_without_an_error() -> None:
    """``ray.remote(LiteOwner)`` builds a class derived from LiteOwner; collecting it ran ``__del__`` on an
    object without ``server`` and printed an AttributeError in every `ingest --ray`."""
    import ray

    from ragserve.store.lite_server import LiteOwner

    errors: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, errors.append
    try:
        actor_class = ray.remote(LiteOwner)
        assert issubclass(type(actor_class), LiteOwner)  # what made __del__ run on it
        del actor_class
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [str(e.exc_value) for e in errors] == []
