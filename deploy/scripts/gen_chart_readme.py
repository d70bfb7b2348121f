"""Generate deploy/helm/ragserve/README.md, the chart's values reference, from the `# --` comments of
values.yaml (helm-docs conventions, as KubeRay's charts use), so the reference cannot drift from the values
it documents and no Go tool is needed. Nothing here names a values key: the table follows the file.

- `# -- text` (continued on the following `#` lines) documents the next key; its path comes from indentation;
- rows: every documented key (leaves, lists, and mappings with their own comment), in file order, with its
  YAML type and its default as compact JSON; undocumented keys and commented-out YAML are not rows;
- warnings (stderr, never fatal): `# --` comments that document no key, empty ones, and keys that neither
  their own comment nor an ancestor's covers.

    .venv/bin/python deploy/scripts/gen_chart_readme.py          # rewrite the file
    .venv/bin/python deploy/scripts/gen_chart_readme.py --check  # exit 1 with a diff if it is stale
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from generated import write_or_check

CHART = Path(__file__).resolve().parents[1] / "helm" / "ragserve"
README_PATH = CHART / "README.md"
DOC = re.compile(r"^#\s*--(?:\s+(.*))?$")
KEY = re.compile(r"""^( *)([A-Za-z0-9_.\-/]+|"[^"]*"|'[^']*')\s*:(?:\s|$)""")
TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (list, "list"), (dict, "object"))
BADGES = {
    "version": "Version: {}",
    "type": "Type: {}",
    "appVersion": "AppVersion: {}",
    "kubeVersion": "Kubernetes: `{}`",
}
MISSING = object()


@dataclass
class Comment:
    line: int  # of its `# --`
    text: str  # all its lines joined
    path: tuple[str, ...] | None = None  # the key below it; None when no key follows


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def comments(text: str) -> list[Comment]:
    """Every `# --` comment of a values file, with the path of the key it documents."""
    out: list[Comment] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the current key and its parents
    pending: Comment | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if doc := DOC.match(stripped):
            pending = Comment(number, (doc.group(1) or "").strip())
            out.append(pending)
        elif stripped.startswith("#") or not stripped:  # continuation, other comment or blank line
            if pending and stripped[1:].strip():
                pending.text = f"{pending.text} {stripped[1:].strip()}".lstrip()
        else:
            key = None if stripped.startswith("-") else KEY.match(line)
            if key:
                while stack and stack[-1][0] >= len(key.group(1)):
                    stack.pop()
                stack.append((len(key.group(1)), key.group(2).strip("'\"")))
                if pending:
                    pending.path = tuple(k for _, k in stack)
            pending = None
    return out


def lookup(tree: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` through nested mappings, or MISSING (e.g. a key inside a list item)."""
    for part in path:
        if not isinstance(tree, dict):
            return MISSING
        tree = next((v for k, v in tree.items() if str(k) == part), MISSING)
    return tree


def yaml_type(value: Any) -> str:
    default = "null" if value is None else "string"
    return next((name for kind, name in TYPES if isinstance(value, kind)), default)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def rows(text: str) -> list[Row]:
    tree = yaml.safe_load(text) or {}
    out = []
    for c in comments(text):
        value = MISSING if c.path is None else lookup(tree, c.path)
        if c.path is not None and value is not MISSING:
            default = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
            out.append(Row(".".join(c.path), yaml_type(value), f"`{cell(default)}`", cell(c.text)))
    return out


def problems(text: str) -> list[str]:
    """`# --` comments that document no key, empty ones, and keys no comment covers (own or an ancestor's)."""
    tree = yaml.safe_load(text) or {}
    found = comments(text)
    out = [f"values.yaml:{c.line}: empty `# --` comment" for c in found if not c.text]
    out += [
        f"values.yaml:{c.line}: `# --` comment documents no key"
        for c in found
        if c.path is None or lookup(tree, c.path) is MISSING
    ]
    documented = {c.path for c in found}
    todo: list[tuple[tuple[str, ...], Any]] = [((str(k),), v) for k, v in tree.items()]
    while todo:
        path, value = todo.pop(0)
        if path in documented:
            continue
        if isinstance(value, dict) and value:
            todo[:0] = [((*path, str(k)), v) for k, v in value.items()]
        else:
            out.append(f"values.yaml: {'.'.join(path)} has no `# --` comment (nor has a parent)")
    return out


def render(chart: Path = CHART) -> str:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    badges = " · ".join(form.format(meta[key]) for key, form in BADGES.items() if meta.get(key))
    values = (chart / "values.yaml").read_text(encoding="utf-8")
    table = [f"| {r.key} | {r.type} | {r.default} | {r.description} |" for r in rows(values)]
    lines = [
        f"# {meta['name']}",
        "",
        badges,
        "",
        str(meta.get("description", "")).strip(),
        "",
        "This file is generated by `deploy/scripts/gen_chart_readme.py` from the `# --` comments of",
        "[values.yaml](values.yaml): edit values.yaml, then run `make deploy-render`.",
        "",
        "## Install",
        "",
        "Prerequisites, images, the operator, Milvus, Secrets and the `helm install` command, in order:",
        "[docs/kubernetes.md](../../../docs/kubernetes.md).",
        "",
        "## Values",
        "",
        "| Key | Type | Default | Description |",
        "|-----|------|---------|-------------|",
        *table,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    for problem in problems((CHART / "values.yaml").read_text(encoding="utf-8")):
        print(f"warning: {problem}", file=sys.stderr)
    return write_or_check({README_PATH: render()}, argv, Path(__file__).name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
