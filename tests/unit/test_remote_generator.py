"""RemoteGenerator (the router's side of the Generator hop) against a scripted Serve response: when
``submit`` returns, what a slow or missing replica gives, and that a request nobody reads is cancelled.
Faults injected on purpose; the real hop is covered by the Serve tests (tests/integration)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ragserve.config import SamplingConfig
from ragserve.generator.deployment import RemoteGenerator
from ragserve.generator.engine import GenerationDelta, GeneratorError


def delta(text: str, tokens: int) -> GenerationDelta:
    return GenerationDelta(text, prompt_tokens=3, completion_tokens=tokens, finish_reason=None)


class ScriptedResponse:
    """What ``handle.generate.remote()`` returns: sent to a replica after ``send_s``, then each batch of
    deltas after ``token_s``."""

    def __init__(
        self,
        batches: list[list[GenerationDelta]],
        send_s: float = 0.0,
        token_s: float = 0.0,
        stall_at: int | None = None,  # the batch before which the replica stalls (60 s)
    ):
        self.batches, self.send_s, self.token_s = list(batches), send_s, token_s
        self.stall_at, self.served = stall_at, 0
        self.sent = False
        self.cancelled = False

    async def _fetch_future_result_async(self) -> None:
        await asyncio.sleep(self.send_s)
        self.sent = True

    def __aiter__(self) -> ScriptedResponse:
        return self

    async def __anext__(self) -> list[GenerationDelta]:
        await self._fetch_future_result_async()
        await asyncio.sleep(60 if self.served == self.stall_at else self.token_s)
        self.served += 1
        if not self.batches:
            raise StopAsyncIteration
        return self.batches.pop(0)

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedHandle:
    def __init__(self, response: ScriptedResponse):
        self.response = response
        self.generate = self

    def options(self, **_: Any) -> ScriptedHandle:
        return self

    def remote(self, *_: Any) -> ScriptedResponse:
        return self.response


def submit(response: ScriptedResponse, timeout_s: float = 5.0) -> Any:
    generator = RemoteGenerator(ScriptedHandle(response), "tiny", first_token_timeout_s=timeout_s)
    return generator.submit([1, 2, 3], SamplingConfig(), "r1")


async def read_all(deltas: Any) -> list[str]:
    try:
        return [d.text async for d in deltas]
    finally:
        await deltas.aclose()


def test_submit_returns_once_a_replica_has_the_request_and_before_its_first_token() -> None:
    response = ScriptedResponse([[delta("Hel", 1)], [delta("lo", 2), delta("!", 3)]], send_s=0.05, token_s=60)

    async def main() -> None:
        deltas = await submit(response)
        assert response.sent  # the replica has it: the router can now write the sources
        await deltas.aclose()

    asyncio.run(asyncio.wait_for(main(), 5))  # never waited the 60 s for a token
    assert response.cancelled


def test_the_deltas_of_each_batch_come_in_order_and_the_request_is_released() -> None:
    response = ScriptedResponse([[delta("Hel", 1)], [delta("lo", 2), delta("!", 3)]])

    async def main() -> list[str]:
        return await read_all(await submit(response))

    assert asyncio.run(main()) == ["Hel", "lo", "!"]
    assert response.cancelled  # released (Serve's cancel is a no-op on a finished stream)


def test_no_replica_taking_the_request_is_a_generator_error_within_the_first_token_timeout() -> None:
    response = ScriptedResponse([[delta("x", 1)]], send_s=60)

    async def main() -> None:
        await submit(response, timeout_s=0.2)

    with pytest.raises(GeneratorError, match="no token within"):
        asyncio.run(asyncio.wait_for(main(), 5))
    assert response.cancelled


def test_the_first_token_timeout_counts_from_the_submit() -> None:
    """0.3 s in all: 0.2 s to reach a replica leaves 0.1 s for a token that takes 0.2 s."""
    response = ScriptedResponse([[delta("x", 1)]], send_s=0.2, token_s=0.2)

    async def main() -> list[str]:
        return await read_all(await submit(response, timeout_s=0.3))

    with pytest.raises(GeneratorError, match="no token within 0 s"):
        asyncio.run(asyncio.wait_for(main(), 5))
    assert response.cancelled


def test_the_installed_serve_has_the_call_submit_waits_on() -> None:
    """``sent_to_replica`` uses a private method of Serve's streaming response: a Ray upgrade that drops it
    fails here, not as a slower first token."""
    from ray.serve.handle import DeploymentResponseGenerator

    assert asyncio.iscoroutinefunction(DeploymentResponseGenerator._fetch_future_result_async)


def test_a_stream_that_stalls_mid_answer_ends_with_a_generator_error() -> None:
    response = ScriptedResponse([[delta("Hel", 1)], [delta("lo", 2)], [delta("!", 3)]], stall_at=1)
    seen: list[str] = []

    async def main() -> None:
        deltas = await submit(response, timeout_s=0.2)
        try:
            async for d in deltas:
                seen.append(d.text)
        finally:
            await deltas.aclose()

    with pytest.raises(GeneratorError, match="no token within"):
        asyncio.run(asyncio.wait_for(main(), 5))  # not the 60 s of the stall
    assert seen == ["Hel"] and response.cancelled


class CoveringRetriever:
    """Retrieval that always says the question is covered (the pipeline's other side, not under test)."""

    async def run(self, _: Any) -> Any:
        from ragserve.retrieval import SearchResult

        return SearchResult([], {"embed_ms": 1.0, "search_ms": 1.0}, best_similarity=0.9)

    def covers(self, *_: Any) -> bool:
        return True


class IdsPrompt:
    async def build_async(self, *_: Any) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(token_ids=[1, 2, 3], dropped=0)


def test_the_pipeline_submits_before_the_sources_and_cancels_a_request_whose_reader_left() -> None:
    """The request is at a replica when Retrieved (the sources) is handed out; a client that leaves before
    the first token (the stream is closed after Retrieved) cancels it."""
    from ragserve.rag import RagPipeline, RagRequest, Retrieved

    response = ScriptedResponse([[delta("x", 1)]], token_s=60)
    generator = RemoteGenerator(ScriptedHandle(response), "tiny", first_token_timeout_s=5)
    pipeline = RagPipeline(CoveringRetriever(), generator, IdsPrompt(), 1, "not covered")

    async def main() -> None:
        events = pipeline.stream(RagRequest("question?", SamplingConfig()))
        assert isinstance(await anext(events), Retrieved) and response.sent and not response.cancelled
        await events.aclose()

    asyncio.run(asyncio.wait_for(main(), 5))
    assert response.cancelled
