"""values.schema.json: generated (no drift), every values key documented, bad values rejected by name."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, load_script


def test_schema_is_regenerated_without_drift() -> None:
    gen = load_script("gen_values_schema")
    on_disk = (CHART / "values.schema.json").read_text(encoding="utf-8")
    assert on_disk == gen.render(), "run: .venv/bin/python deploy/scripts/gen_values_schema.py"


def test_every_values_key_is_documented() -> None:
    gen = load_script("gen_values_schema")
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    docs = gen.values_docs(text)
    missing = [p for p in gen.leaf_paths(yaml.safe_load(text)) if not docs.get(p)]
    assert not missing, f"keys without a `# --` comment: {missing}"


def test_app_schema_follows_the_config_model() -> None:
    """Every AppConfig field is accepted under `app` (1:1), except the token, which comes from a Secret."""
    from ragserve.config import AppConfig

    schema = load_script("gen_values_schema").build()
    app = schema["properties"]["app"]
    assert set(app["properties"]) == set(AppConfig.model_fields)
    assert app["additionalProperties"] is False
    store = schema["$defs"]["StoreConfig"]["properties"]
    assert "token" not in store and "uri" in schema["$defs"]["StoreConfig"]["required"]


BAD_VALUES = [
    # (--set arguments, text the error must contain: the key's path)
    (
        ["app.router.deployment.autoscaling_config.min_replicas=-1"],
        "/app/router/deployment/autoscaling_config/min_replicas",
    ),
    (["app.router.deployment.max_replicas=3"], "'max_replicas' not allowed"),  # the old flat shape
    (["app.generator.resources.num_gpus=1"], "'num_gpus' not allowed"),  # derived from parallelism
    (["app.profile=staging"], "/app/profile"),
    (["workers.cpu.maxReplicas=-2"], "/workers/cpu/maxReplicas"),
    (["workers.gpu.minReplicas=-1"], "/workers/gpu/minReplicas"),
    (["app.generator.tensor_parallel_size=0"], "/app/generator/tensor_parallel_size"),
    (["app.store.uri=null"], "missing property 'uri'"),
    (["app.store.uri="], "/app/store/uri"),
    (["app.store.uri=milvus.db"], "/app/store/uri"),
    (["app.store.token=user:pw"], "'token' not allowed"),
    (["app.generator.tensor_paralel_size=2"], "'tensor_paralel_size' not allowed"),
    (["app.bogus=1"], "'bogus' not allowed"),
    (["workers.cpu.replica=2"], "'replica' not allowed"),
    (["rayService.upgradeStrategy=Rolling"], "/rayService/upgradeStrategy"),
    (["app.generator.device=tpu"], "/app/generator/device"),
    (["app.embedder.deployment=null"], "/app/embedder/deployment"),
]


@pytest.mark.parametrize(("sets", "needle"), BAD_VALUES, ids=[b[0][0] for b in BAD_VALUES])
def test_bad_values_are_rejected_naming_the_key(helm_template: Any, sets: list[str], needle: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    proc = helm_template(*args, check=False)
    assert proc.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert needle in proc.stderr, proc.stderr


def test_cross_field_rules_fail_with_the_key(helm_template: Any) -> None:
    proc = helm_template("--set", "app.embedder.resources.num_gpus=1", check=False)
    assert proc.returncode != 0 and "workers.cpu.gpus" in proc.stderr
    proc = helm_template(
        "--set", "app.generator.device=cpu", "--set", "app.generator.tensor_parallel_size=2", check=False
    )
    assert proc.returncode != 0 and "app.generator.device: cuda" in proc.stderr


def test_good_values_pass(helm_template: Any) -> None:
    proc = helm_template(
        "--set",
        "app.generator.tensor_parallel_size=4",
        "--set",
        "workers.gpu.maxReplicas=2",
        "--set",
        "app.store.uri=https://milvus.example.com:443",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
