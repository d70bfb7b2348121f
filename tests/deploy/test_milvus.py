"""The Milvus values files parse, pin the same versions, and the install docs use those pins."""

from __future__ import annotations

import yaml

from tests.deploy.conftest import DEPLOY, REPO

MILVUS = DEPLOY / "helm" / "milvus"


def _pins() -> dict[str, str]:
    lines = (MILVUS / "versions.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_values_files_pin_the_image_and_modes() -> None:
    pins = _pins()
    modes = {"values-standalone.yaml": False, "values-cluster.yaml": True}
    for name, cluster in modes.items():
        values = yaml.safe_load((MILVUS / name).read_text(encoding="utf-8"))
        assert values["cluster"]["enabled"] is cluster
        assert values["image"]["all"]["tag"] == pins["MILVUS_IMAGE_TAG"]
        assert values["woodpecker"]["enabled"] and not values["pulsarv3"]["enabled"]
        assert f"--version {pins['MILVUS_CHART_VERSION']}" in (MILVUS / name).read_text(encoding="utf-8")
    cluster = yaml.safe_load((MILVUS / "values-cluster.yaml").read_text(encoding="utf-8"))
    assert "authorizationEnabled: true" in cluster["extraConfigFiles"]["user.yaml"]


def test_docs_install_the_pinned_chart() -> None:
    docs = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    version = _pins()["MILVUS_CHART_VERSION"]
    installs = [line for line in docs.splitlines() if "helm install milvus zilliztech/milvus" in line]
    assert len(installs) == 2 and all(f"--version {version}" in line for line in installs)
    assert "kuberay/kuberay-operator --version 1.7.0" in docs
