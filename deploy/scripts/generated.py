"""Files generated from the chart, the config model or the dashboards' source: written, or checked.

Every generator in deploy/scripts ends with ``sys.exit(write_or_check(outputs, sys.argv[1:]))``: without
arguments it writes the files; with ``--check`` it writes nothing, prints a diff of each stale file and
exits 1 (the tests run it that way, so a hand edit or a forgotten regeneration fails CI).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_or_check(outputs: dict[Path, str], argv: list[str], script: str) -> int:
    if "--check" not in argv:
        for path, text in outputs.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {_shown(path)}")
        return 0
    stale = []
    for path, text in outputs.items():
        on_disk = path.read_text(encoding="utf-8") if path.exists() else ""
        if on_disk != text:
            stale.append(_shown(path))
            diff = difflib.unified_diff(
                on_disk.splitlines(keepends=True), text.splitlines(keepends=True), _shown(path), "generated"
            )
            sys.stdout.writelines(diff)
    if stale:
        print(f"stale, run deploy/scripts/{script}: {', '.join(stale)} is stale", file=sys.stderr)
        return 1
    return 0
