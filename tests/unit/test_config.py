from pathlib import Path
from typing import Any

import pytest

from ragserve.config import (
    BUNDLED_MINILM,
    PROFILES,
    SMOLLM2,
    ConfigError,
    env_overrides,
    load_config,
    model_defaults,
    profile_defaults,
)
from ragserve.limits import MAX_NEW_TOKENS


def test_local_profile_defaults(tmp_path: Path) -> None:
    cfg = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    assert cfg.profile == "local"
    assert cfg.embedder.model == BUNDLED_MINILM
    assert cfg.generator.model == SMOLLM2
    assert cfg.store.uri == str(tmp_path / "milvus.db")
    assert cfg.store.is_lite
    assert cfg.ingest.chunk_size == 512 and cfg.ingest.chunk_overlap == 51  # walkthrough: 10% overlap
    s = cfg.generator.sampling
    penalties = (s.repetition_penalty, s.frequency_penalty, s.no_repeat_ngram_size)
    assert s.temperature == 0.0 and penalties == (1.0, 0.5, 4)


def test_production_profile_needs_a_milvus_uri(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store\.uri"):
        load_config(profile="production", env={"RAGSERVE_HOME": str(tmp_path)})
    cfg = load_config(
        profile="production",
        env={"RAGSERVE__STORE__URI": "http://milvus:19530", "RAGSERVE__STORE__TOKEN": "root:Milvus"},
    )
    assert cfg.embedder.model == "BAAI/bge-large-en-v1.5"
    assert cfg.generator.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg.generator.dtype == "bfloat16"
    assert not cfg.store.is_lite
    assert cfg.store.token is not None and cfg.store.token.get_secret_value() == "root:Milvus"
    assert "root:Milvus" not in repr(cfg) and "root:Milvus" not in str(cfg.model_dump(mode="json"))


def test_yaml_file_and_env_layering(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  chunk_size: 1000\nprompt:\n  top_k: 7\n")
    cfg = load_config(path, env={"RAGSERVE__PROMPT__TOP_K": "3", "RAGSERVE_HOME": str(tmp_path)})
    assert cfg.ingest.chunk_size == 1000 and cfg.ingest.chunk_overlap == 100
    assert cfg.prompt.top_k == 3  # env beats the file


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("store:\n  metric: L2\n", "store.metric"),
        ("ingest:\n  chunk_size: 100\n  chunk_overlap: 100\n", "ingest"),
        ("generator:\n  tensor_parallel_size: 0\n", "generator.tensor_parallel_size"),
        ("prompt:\n  top_k: -1\n", "prompt.top_k"),
        ("store:\n  uri: milvus.sqlite\n", "store.uri"),
        ("store:\n  collection: 'bad name'\n", "store.collection"),
        ("embedder:\n  device: gpu0\n", "embedder.device"),
        ("embedder:\n  unknown_key: 1\n", "embedder.unknown_key"),
        ("generator:\n  max_model_len: 256\n  sampling: {max_tokens: 256}\n", "generator"),
    ],
)
def test_invalid_values_name_the_field(tmp_path: Path, yaml_text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"RAGSERVE_HOME": str(tmp_path)})
    assert field in str(err.value)


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="profile"):
        load_config(profile="staging")


def _copies(data: dict[str, Any], defaults: dict[str, Any], path: str = "") -> list[str]:
    """Keys of ``data`` whose value equals the model's default."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            out += _copies(value, defaults[key], f"{path}{key}.")
        elif key in defaults and defaults[key] == value:
            out.append(path + key)
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_a_profile_states_only_what_differs_from_the_model(profile: str) -> None:
    """The model owns every default (docs/configuration.md, "Who owns a default"): a profile value equal to
    it is a second copy."""
    defaults = model_defaults()
    assert _copies({"prompt": {"top_k": 5}, "store": {"timeout_s": 3}}, defaults) == ["prompt.top_k"]
    data = {k: v for k, v in profile_defaults(profile).items() if k != "profile"}
    assert _copies(data, defaults) == []


def test_profiles_are_the_files_and_bounds_come_from_limits(tmp_path: Path) -> None:
    assert PROFILES == ("local", "production")  # the files in ragserve/profiles
    with pytest.raises(
        ConfigError, match=r"profile: unknown profile 'staging'; choose one of local, production"
    ):
        load_config(profile="staging")
    too_many = {"generator": {"sampling": {"max_tokens": MAX_NEW_TOKENS + 1}}}
    with pytest.raises(
        ConfigError, match=rf"generator\.sampling\.max_tokens: .*less than or equal to {MAX_NEW_TOKENS}"
    ):
        load_config(env={"RAGSERVE_HOME": str(tmp_path)}, overrides=too_many)


def test_env_overrides_parse_scalars() -> None:
    assert env_overrides({"RAGSERVE__GENERATOR__SAMPLING__MAX_TOKENS": "32", "OTHER": "x"}) == {
        "generator": {"sampling": {"max_tokens": 32}}
    }
