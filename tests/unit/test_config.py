from pathlib import Path

import pytest

from ragserve.config import BUNDLED_MINILM, SMOLLM2, ConfigError, env_overrides, load_config


def test_local_profile_defaults(tmp_path: Path) -> None:
    cfg = load_config(env={"RAGSERVE_HOME": str(tmp_path)})
    assert cfg.profile == "local"
    assert cfg.embedder.model == BUNDLED_MINILM
    assert cfg.generator.model == SMOLLM2
    assert cfg.store.uri == str(tmp_path / "milvus.db")
    assert cfg.store.is_lite
    assert cfg.ingest.chunk_size == 512 and cfg.ingest.chunk_overlap == 51  # walkthrough: 10% overlap
    assert (cfg.generator.sampling.temperature, cfg.generator.sampling.repetition_penalty) == (0.0, 1.1)


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


def test_env_overrides_parse_scalars() -> None:
    assert env_overrides({"RAGSERVE__GENERATOR__SAMPLING__MAX_TOKENS": "32", "OTHER": "x"}) == {
        "generator": {"sampling": {"max_tokens": 32}}
    }
