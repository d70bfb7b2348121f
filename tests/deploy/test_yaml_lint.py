"""yamllint on the hand-written YAML (values, ci scenarios, kustomize); templates are checked rendered."""

from __future__ import annotations

import subprocess
import sys

from tests.deploy.conftest import CHART, DEPLOY

CONFIG = (
    "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: disable, "
    "comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}, "
    "brackets: {max-spaces-inside: 1}}}"
)


def test_yamllint() -> None:
    files = [
        CHART / "values.yaml",
        CHART / "Chart.yaml",
        *sorted((CHART / "ci").glob("*.yaml")),
        *sorted((DEPLOY / "helm" / "milvus").glob("*.yaml")),
        *sorted((DEPLOY / "kustomize").rglob("*.yaml")),
    ]
    files = [f for f in files if not f.read_text(encoding="utf-8").startswith("# Generated")]
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "-s", "-d", CONFIG, *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
