"""The Milvus values files parse and set the modes; versions.env is the one place its versions are written."""

from __future__ import annotations

import re

import yaml

from tests.deploy.conftest import DEPLOY, REPO

MILVUS = DEPLOY / "helm" / "milvus"


def _pins() -> dict[str, str]:
    lines = (MILVUS / "versions.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_values_files_set_the_modes_and_no_version() -> None:
    pins = _pins()
    assert set(pins) == {"MILVUS_CHART_VERSION", "MILVUS_IMAGE_TAG"}
    modes = {"values-standalone.yaml": False, "values-cluster.yaml": True}
    for name, cluster in modes.items():
        text = (MILVUS / name).read_text(encoding="utf-8")
        values = yaml.safe_load(text)
        assert values["cluster"]["enabled"] is cluster
        assert "image" not in values  # the tag comes from versions.env at install time
        assert values["woodpecker"]["enabled"] and not values["pulsarv3"]["enabled"]
        assert not [v for v in pins.values() if v in text]
        assert '--version "$MILVUS_CHART_VERSION" --set image.all.tag="$MILVUS_IMAGE_TAG"' in text
    cluster = yaml.safe_load((MILVUS / "values-cluster.yaml").read_text(encoding="utf-8"))
    assert "authorizationEnabled: true" in cluster["extraConfigFiles"]["user.yaml"]


def test_docs_install_the_pinned_chart_from_versions_env() -> None:
    docs = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    assert not [v for v in _pins().values() if v in docs]
    assert ". deploy/helm/milvus/versions.env" in docs
    installs = [line for line in docs.splitlines() if "helm install milvus zilliztech/milvus" in line]
    assert len(installs) == 2 and all('"${MILVUS_PINS[@]}"' in line for line in installs)
    pins = re.search(r"^MILVUS_PINS=\((.*)\)$", docs, re.M)
    assert pins and "$MILVUS_CHART_VERSION" in pins[1] and "$MILVUS_IMAGE_TAG" in pins[1]
    assert "kuberay/kuberay-operator --version 1.7.0" in docs
