"""deploy/helm/ragserve/README.md: generated from values.yaml's `# --` comments (no drift), by a parser that
follows helm-docs' rules, and a `--check` that really fails on a stale file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.conftest import CHART, DEPLOY, load_script

SCRIPT = DEPLOY / "scripts" / "gen_chart_readme.py"

VALUES = """\
# Header comment of the file: not documentation.

# -- Top-level string.
name: demo
server:
  # -- Port the server listens on,
  #   continued on a second line | with a pipe.
  port: 8080
  # -- Hosts served.
  hosts: [a.example.com, b.example.com]
  tls:
    # -- Enable TLS.
    enabled: false
  # -- Extra environment (list of EnvVar).
  env:
    - name: A
      value: "1"
  # -- After the list: still a child of server.
  after: true
  undocumented: 1
# optional block, commented out:
# extra:
#   enabled: true
#   size: 10Gi
# -- Free-form labels (one row, children are not).
labels:
  team: search
# -- Sampling ratio.
ratio: 0.5
# -- Nothing by default.
empty: null
# -- Dangling: no key follows.
"""


def check(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )


def test_committed_readme_is_up_to_date() -> None:
    proc = check(SCRIPT)
    assert proc.returncode == 0, f"run: .venv/bin/python {SCRIPT.relative_to(DEPLOY.parent)}\n{proc.stdout}"
    assert (CHART / "README.md").read_text(encoding="utf-8").startswith("# ragserve\n")


def test_parser_follows_helm_docs_rules() -> None:
    gen = load_script("gen_chart_readme")
    rows = [(r.key, r.type, r.default, r.description) for r in gen.rows(VALUES)]
    assert rows == [
        ("name", "string", '`"demo"`', "Top-level string."),
        (
            "server.port",
            "int",
            "`8080`",
            "Port the server listens on, continued on a second line \\| with a pipe.",
        ),
        ("server.hosts", "list", '`["a.example.com","b.example.com"]`', "Hosts served."),
        ("server.tls.enabled", "bool", "`false`", "Enable TLS."),
        ("server.env", "list", '`[{"name":"A","value":"1"}]`', "Extra environment (list of EnvVar)."),
        ("server.after", "bool", "`true`", "After the list: still a child of server."),
        ("labels", "object", '`{"team":"search"}`', "Free-form labels (one row, children are not)."),
        ("ratio", "float", "`0.5`", "Sampling ratio."),
        ("empty", "null", "`null`", "Nothing by default."),
    ]
    dangling = VALUES.splitlines().index("# -- Dangling: no key follows.") + 1
    assert gen.problems(VALUES) == [
        f"values.yaml:{dangling}: `# --` comment documents no key",
        "values.yaml: server.undocumented has no `# --` comment (nor has a parent)",
    ]


def test_check_fails_on_a_stale_readme_and_generation_repairs_it(tmp_path: Path) -> None:
    """A copy of the script and chart in the same layout (the script finds the chart from its own path)."""
    script = tmp_path / "deploy" / "scripts" / SCRIPT.name
    script.parent.mkdir(parents=True)
    shutil.copy2(SCRIPT, script)
    shutil.copy2(SCRIPT.parent / "generated.py", script.parent)
    chart = tmp_path / "deploy" / "helm" / "ragserve"
    shutil.copytree(CHART, chart)
    assert check(script).returncode == 0

    readme = chart / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    original = lines[-1]
    assert original.startswith("| ")
    lines[-1] = "| edited | by | hand | instead of values.yaml |\n"
    readme.write_text("".join(lines), encoding="utf-8")

    proc = check(script)
    assert proc.returncode == 1
    assert "-| edited | by | hand | instead of values.yaml |\n" in proc.stdout
    assert f"+{original}" in proc.stdout
    assert "is stale" in proc.stderr
    assert readme.read_text(encoding="utf-8").endswith("instead of values.yaml |\n"), "--check wrote"

    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, timeout=60)
    assert readme.read_text(encoding="utf-8").endswith(original)
    assert check(script).returncode == 0
