"""Milvus Lite shared by many processes: one owner serves the *.db over gRPC, everyone else uses its URI.

A Milvus Lite file is opened (and locked) by one process. Under Ray Serve that owner is the
``MilvusLite`` deployment (one replica); routers ask it for the URI and then talk to it exactly as
they talk to a Milvus cluster (``http://host:port`` through pymilvus), so the store code has one path.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LiteServer:
    """Runs Milvus Lite's gRPC server in this process for one data path."""

    def __init__(self, db_path: str, host: str = "127.0.0.1", port: int = 0):
        from milvus_lite.adapter.grpc.server import start_server_in_thread

        path = Path(db_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any
        self._server, self._db, self.port = start_server_in_thread(str(path), host=host, port=port)
        self.host = host if host not in ("0.0.0.0", "") else socket.gethostbyname(socket.gethostname())
        log.info("Milvus Lite %s served at %s", path, self.uri)

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.stop(grace=2)
        self._db.close()


class LiteOwner:
    """The one process that opens a Milvus Lite file; everyone else uses its URI. Serve runs it as the
    ``MilvusLite`` deployment (exactly one replica), ``ingest --ray`` as an actor for the job."""

    def __init__(self, db_path: str):
        self.server: LiteServer | None = LiteServer(db_path)

    def uri(self) -> str:
        assert self.server is not None, "stopped"
        return self.server.uri

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def __del__(self) -> None:
        # Also runs when the ActorClass that ``ray.remote(LiteOwner)`` derives from this class is collected:
        # that object never ran __init__ (no ``server``), and must not print an error on the way out.
        if getattr(self, "server", None) is not None:
            self.stop()
