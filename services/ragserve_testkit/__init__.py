"""What the tests and the load tests share, and the one owner of each: the shared data's paths (corpus,
eval set, CRD schemas), a free local port and a real Milvus server. Standard library only at import, so
the Makefile's plain ``python3`` can ask for a path: ``python3 services/ragserve_testkit/__init__.py
corpus|eval|crds``. Not imported by the service itself."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


class MilvusServerUnavailable(RuntimeError):
    """The ``milvus`` package is missing (``installed`` False), or its server did not start."""

    def __init__(self, message: str, installed: bool = True):
        super().__init__(message)
        self.installed = installed


@contextmanager
def milvus_server(base_dir: Path) -> Iterator[str]:
    """A real standalone Milvus server on 127.0.0.1 (PyPI's ``milvus`` package, 2.3.x) with its data under
    ``base_dir``: its URI, until the block ends.

    Milvus 2.3 predates BM25 functions and sparse vectors, so the store gives it dense-only collections
    (docs/retrieval.md, "Milvus servers"). Its embedded etcd's peer port is fixed (2380): one such server
    per machine."""
    try:
        from milvus import MilvusServer, MilvusServerConfig
    except ImportError:
        raise MilvusServerUnavailable(
            "the `milvus` package (embedded Milvus server) is not installed: pip install milvus",
            installed=False,
        ) from None
    server = MilvusServer(MilvusServerConfig(), wait_for_started=False)  # free ports from 19530 upwards
    server.set_base_dir(str(base_dir))
    server.start()
    try:
        try:
            server.wait_started(timeout=90_000)  # ms; polls /healthz
        except (TimeoutError, RuntimeError) as err:
            raise MilvusServerUnavailable(
                f"Milvus server did not start ({err}); see {server.config.base_data_dir}/logs"
            ) from None
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


if __name__ == "__main__":
    print({"corpus": CORPUS, "eval": EVAL, "crds": CRDS}[sys.argv[1]])
