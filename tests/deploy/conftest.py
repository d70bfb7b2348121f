"""Fixtures for the offline Kubernetes checks: helm/kubectl from .tools/bin (scripts/install-deploy-tools.sh),
promtool from Debian's prometheus package, each scenario rendered once per session.

Without the tools the tests skip locally and fail under CI (CI=true), like the shared-corpus fixtures.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "ragserve"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SCENARIOS = {"default": None, **{p.name.removesuffix("-values.yaml"): p for p in CI_VALUES}}
OVERLAYS = sorted(p.name for p in (DEPLOY / "kustomize" / "overlays").iterdir() if p.is_dir())
RELEASE = "ragserve"
NAMESPACE = "ragserve"


def load_script(name: str) -> ModuleType:
    """Import one of deploy/scripts/*.py (they are scripts, not a package; they import their siblings)."""
    if str(DEPLOY / "scripts") not in sys.path:
        sys.path.insert(0, str(DEPLOY / "scripts"))
    path = DEPLOY / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _tool(name: str) -> str:
    local = REPO / ".tools" / "bin" / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        msg = f"{name} not found: run scripts/install-deploy-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("helm")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool("kubectl")


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool (package prometheus), which parses PromQL and rule files offline."""
    return _tool("promtool")


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="session")
def helm_template(helm: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def template(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args], check=check)

    return template


@pytest.fixture(scope="session")
def rendered(helm_template: Callable[..., Any]) -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> rendered objects, for the chart defaults and every ci/*-values.yaml."""
    out = {}
    for name, values in SCENARIOS.items():
        args = ["-f", str(values)] if values else []
        out[name] = docs_of(helm_template(*args).stdout)
    return out


@pytest.fixture(scope="session")
def built_overlays(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    overlays = DEPLOY / "kustomize" / "overlays"
    return {name: docs_of(run([kubectl, "kustomize", str(overlays / name)]).stdout) for name in OVERLAYS}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def serve_app(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The single Serve application of the RayService's serveConfigV2."""
    config = yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    return app


def worker_group(docs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    groups = one(docs, "RayService")["spec"]["rayClusterConfig"].get("workerGroupSpecs", [])
    return next((g for g in groups if g["groupName"] == name), None)
