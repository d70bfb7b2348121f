"""environment.start_local_ray: the one retried start of a local Ray (serve, ingest --ray, the tests)."""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import pytest

from ragserve import environment


class FlakyRay(types.ModuleType):
    """A stand-in for the ``ray`` module whose first ``fails`` inits time out."""

    def __init__(self, fails: int):
        super().__init__("ray")
        self.fails, self.inits, self.shutdowns, self.env_seen = fails, [], 0, []

    def init(self, **kwargs: Any) -> None:
        self.inits.append(kwargs)
        node_env = environment.ray_node_env()
        self.env_seen.append(bool(node_env) and all(os.environ.get(k) == v for k, v in node_env.items()))
        if len(self.inits) <= self.fails:
            raise TimeoutError("raylet did not start in 30 s")

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_timed_out_start_is_retried_with_the_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FlakyRay(fails=2)
    monkeypatch.setitem(sys.modules, "ray", fake)
    environment.start_local_ray(num_cpus=8)
    assert fake.inits == [{"num_cpus": 8}] * 3 and fake.shutdowns == 2
    assert all(fake.env_seen)  # every attempt's processes inherit ray-node-env.yaml


def test_the_last_failure_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FlakyRay(fails=5)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(TimeoutError):
        environment.start_local_ray(attempts=2)
    assert len(fake.inits) == 2 and fake.shutdowns == 2
