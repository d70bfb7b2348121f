"""What the tests and the load tests share, and the one owner of each: the shared data's paths (corpus,
eval set, CRD schemas) and a free local port. Standard library only, so the Makefile's plain ``python3``
can ask for a path: ``python3 services/ragserve_testkit/__init__.py corpus|eval|crds``. Not imported by
the service itself."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The data beside the repo (RAGSERVE_SHARED, else ../shared); read-only, never copied into the repo.
SHARED = Path(os.environ.get("RAGSERVE_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus" / "milvus-docs" / "site" / "en"
EVAL = SHARED / "eval" / "dev.jsonl"
CRDS = SHARED / "schemas" / "crds"  # KubeRay CRD schemas (the deploy tests)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the tests' and the load tests' servers, proxies and scrapers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    print({"corpus": CORPUS, "eval": EVAL, "crds": CRDS}[sys.argv[1]])
