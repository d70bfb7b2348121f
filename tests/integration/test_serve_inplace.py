"""A scaling change is an in-place update: the Serve config's `deployments:` block owns scaling knobs and
`args` carry none, so redeploying with a new `max_replicas` keeps every replica (same actor ids)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.integration.serving import Served, deploy, deployment_details, replicas

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def actor_ids() -> dict[str, set[str]]:
    return {
        name: {r.actor_id for r in d.replicas if str(r.state).endswith("RUNNING")}
        for name, d in deployment_details().items()
    }


def with_generator_max_replicas(document: dict[str, Any], n: int) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    (app,) = changed["applications"]
    (generator,) = [d for d in app["deployments"] if d["name"] == "Generator"]
    generator["autoscaling_config"]["max_replicas"] = n
    return changed


def max_replicas_in_effect(deployment: str) -> int:
    return int(deployment_details()[deployment].deployment_config.autoscaling_config["max_replicas"])


def test_a_scaling_change_keeps_every_replica(served: Served) -> None:
    before = actor_ids()
    assert before["Generator"] and before["Router"] and before["Embedder"]
    assert max_replicas_in_effect("Generator") == 1
    try:
        deploy(with_generator_max_replicas(served.document, 2), timeout_s=120)
        assert max_replicas_in_effect("Generator") == 2  # the new bound is in effect
        after = actor_ids()
        for name, ids in before.items():
            assert ids <= after[name], f"{name} replicas were replaced: {ids} -> {after[name]}"
        assert replicas("Generator") == 1  # no load: the autoscaler had no reason to add one
    finally:
        deploy(served.document, timeout_s=120)  # back to the session's config, in place again
    assert max_replicas_in_effect("Generator") == 1
    assert actor_ids()["Generator"] == before["Generator"]
