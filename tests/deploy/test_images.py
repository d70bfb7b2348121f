"""The Dockerfiles and the chart's default images agree with the pinned versions (images are not built in
CI: there is no container engine)."""

from __future__ import annotations

import re

import yaml

from tests.deploy.conftest import CHART, DEPLOY, REPO


def _pin(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    assert m, pattern
    return m.group(1)


def test_images_match_the_pins() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    ray = _pin(pyproject, r'"ray\[serve\]==([0-9.]+)"')
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert values["rayVersion"] == ray
    assert chart["appVersion"] == _pin(pyproject, r'(?m)^version = "([^"]+)"')
    cpu = (DEPLOY / "docker" / "Dockerfile.cpu").read_text(encoding="utf-8")
    gpu = (DEPLOY / "docker" / "Dockerfile.gpu").read_text(encoding="utf-8")
    for text, flavour in ((cpu, "cpu"), (gpu, "gpu")):
        assert _pin(text, r"ARG RAY_VERSION=([0-9.]+)") == ray
        assert f"FROM rayproject/ray:${{RAY_VERSION}}-py311-{flavour}" in text
        assert "USER 1000" in text
    install = (REPO / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert _pin(cpu, r"ARG TORCH_VERSION=([0-9.]+)") == _pin(install, r"TORCH_VERSION=([0-9.]+)")
    assert 'pip install ".[cpu]"' in cpu and 'pip install ".[gpu]"' in gpu
    assert values["image"]["repository"] == "ragserve"  # tags default to <appVersion>-cpu / -gpu
