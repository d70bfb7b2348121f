"""Models the project generates locally (tiny random-weight models for CPU runs): written once, atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def ensure_generated(target: Path, marker: str, write: Callable[[Path], None]) -> Path:
    """Return ``target``, calling ``write(tmp_dir)`` once to fill it when its ``marker`` file is missing.
    Safe under concurrent callers (several replicas starting at once): each writes a private directory and
    renames it into place; a leftover partial directory from a crash is replaced."""
    target = Path(target).expanduser()
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / marker).exists():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
