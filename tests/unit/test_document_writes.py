"""Document writes through the API cannot starve a router replica (issue 27 item 10): at most
router.document_writes at once (429 beyond), and an embedding call that hangs fails the write in time."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from ragserve.config import load_config
from ragserve.embedder.deployment import RemoteEmbedder
from ragserve.router.models import DocumentsRequest
from ragserve.router.service import ApiError, RagService


class HeldIngestor:
    """ingest_texts blocks (in its worker thread) until the test releases it."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def ingest_texts(self, docs: Any, access: Any) -> Any:
        from ragserve.ingest.plan import IngestReport

        self.started.set()
        self.release.wait(10)
        return IngestReport(files=len(docs))


def test_a_write_beyond_the_replicas_limit_gets_429_with_retry_after() -> None:
    cfg = load_config(overrides={"router": {"document_writes": 1}})
    pipeline = SimpleNamespace(retriever=SimpleNamespace(store=None), generator=None)
    ingestor = HeldIngestor()
    service = RagService(cfg, pipeline, ingestor)  # type: ignore[arg-type]
    body = DocumentsRequest.model_validate({"documents": [{"source": "a.md", "text": "x"}]})

    async def main() -> None:
        first = asyncio.create_task(service.add_documents(body))
        await asyncio.to_thread(ingestor.started.wait, 5)
        with pytest.raises(ApiError) as refused:
            await service.add_documents(body)
        assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
        ingestor.release.set()
        assert (await first)["files"] == 1
        ingestor.release.set()
        assert (await service.add_documents(body))["files"] == 1  # the slot is free again

    asyncio.run(asyncio.wait_for(main(), 10))


class HangingHandle:
    """An embedder handle whose document call never answers."""

    def __init__(self) -> None:
        self.embed_documents = self

    async def remote(self, texts: list[str]) -> Any:
        await asyncio.sleep(60)


def test_an_embedding_call_that_hangs_fails_the_write_within_its_timeout() -> None:
    async def main() -> None:
        embedder = RemoteEmbedder(HangingHandle(), "m", 4, 8, documents_timeout_s=0.2)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(embedder.embed_documents, ["text"])  # ingestion's worker thread

    asyncio.run(asyncio.wait_for(main(), 10))  # not the 60 s of the hang


def test_writes_are_logged_with_their_principal(caplog: pytest.LogCaptureFixture) -> None:
    from ragserve.router.auth import Principal

    cfg = load_config()
    ingestor = HeldIngestor()
    ingestor.release.set()
    pipeline = SimpleNamespace(retriever=SimpleNamespace(store=None), generator=None)
    service = RagService(cfg, pipeline, ingestor)  # type: ignore[arg-type]
    body = DocumentsRequest.model_validate({"documents": [{"source": "hr/pay.md", "text": "x"}]})
    with caplog.at_level("INFO", logger="ragserve.router.service"):
        asyncio.run(service.add_documents(body, Principal("alice", "acme")))
    (line,) = [r.getMessage() for r in caplog.records if "written by" in r.getMessage()]
    assert line.startswith("documents written by alice (tenant acme)") and "hr/pay.md" in line
